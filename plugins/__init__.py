"""Built-in dcrobench plugins, registered through the ``dcrobench`` entry-point group."""
