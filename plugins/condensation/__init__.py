"""Dataset-condensation methods: DM, GM (DC) and TM (MTT)."""
