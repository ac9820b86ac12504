// The leaderboard page's tables: sorting, filtering, the "show all columns" toggle, the best scores in bold.
// The state lives in the URL fragment (sort, dir, one key per filter, columns=all), read on load.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("leaderboard-data").textContent);
  const columns = data.columns, filters = data.filters, ATTACK_PREFIX = data.attack_prefix;
  const rows = data.rows.map((row, index) => ({row, index}));
  const byKey = Object.fromEntries(columns.map(c => [c.key, c]));
  const state = {sort: null, dir: "asc", filter: {}, allColumns: false};
  // with no primary column (a custom column list) there is nothing to hide: every column is shown
  const hasSecondary = columns.some(c => c.primary) && columns.some(c => !c.primary);
  // the scores whose best value is bold, per table, among the entries shown (the reference row aside)
  const BEST_KEYS = ["standard_mean", "robust_mean"];

  function isMissing(v) { return v === null || v === undefined || v === ""; }

  // the full-data row (no budget): the reference every entry is compared with
  function isReference(row) { return "budget" in row && isMissing(row.budget); }

  function display(col, v) {
    if (isMissing(v)) return col && col.format === "budget" ? "full" : "–";
    if (typeof v === "number" && col) {
      if (col.format === "pct") return (100 * v).toFixed(1);
      if (col.format === "int" || col.format === "budget") return String(v);
      if (col.format === "num") return String(Number(v.toPrecision(4)));
      if (col.format === "p") return v < 0.001 ? "< 0.001" : v.toFixed(3);
    }
    if (col && col.format === "date") return String(v).slice(0, 16).replace("T", " ");
    return String(v);
  }

  // the value a select filter compares: the shown text for a missing value ("full" for the full-set budget)
  function token(key, v) { return isMissing(v) ? display(byKey[key], v) : String(v); }

  function sortValue(col, v) {
    if (isMissing(v)) return col.format === "budget" ? Infinity : null;
    return v;
  }

  function compare(key, dir) {
    const col = byKey[key], sign = dir === "desc" ? -1 : 1;
    return (a, b) => {
      const x = sortValue(col, a.row[key]), y = sortValue(col, b.row[key]);
      if (x === null || y === null) {  // missing values last in either direction
        return x === y ? a.index - b.index : (x === null ? 1 : -1);
      }
      const c = typeof x === "number" && typeof y === "number" ? (x > y) - (x < y)
        : String(x).localeCompare(String(y), undefined, {numeric: true});
      return c !== 0 ? sign * c : a.index - b.index;
    };
  }

  function matches(row) {
    return filters.every(f => {
      const want = state.filter[f.key];
      if (!want) return true;
      if (f.key === "budget" && isReference(row)) return true;  // the reference stays under a budget filter
      if (f.kind === "text") return String(row[f.key] ?? "").toLowerCase().includes(want.toLowerCase());
      return token(f.key, row[f.key]) === want;
    });
  }

  function readLocation() {
    const params = new URLSearchParams(location.search);
    new URLSearchParams(location.hash.replace(/^#/, "")).forEach((v, k) => params.set(k, v));
    const sort = params.get("sort");
    if (sort && byKey[sort]) {
      state.sort = sort;
      const dir = params.get("dir");
      state.dir = dir === "asc" || dir === "desc" ? dir : defaultDir(byKey[sort]);
    }
    filters.forEach(f => { if (params.get(f.key)) state.filter[f.key] = params.get(f.key); });
    state.allColumns = params.get("columns") === "all";
  }

  function writeLocation() {
    const params = new URLSearchParams();
    if (state.sort) { params.set("sort", state.sort); params.set("dir", state.dir); }
    filters.forEach(f => { if (state.filter[f.key]) params.set(f.key, state.filter[f.key]); });
    if (state.allColumns) params.set("columns", "all");
    const text = params.toString();
    try { history.replaceState(null, "", location.pathname + (text ? "#" + text : "")); } catch (e) {}
  }

  function defaultDir(col) { return col.numeric ? "desc" : "asc"; }

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    (children || []).forEach(child => node.append(child));
    return node;
  }

  function buildFilters() {
    const form = document.getElementById("filters");
    filters.forEach(f => {
      const label = el("label", {textContent: (byKey[f.key] || {label: f.key}).label || f.key});
      let input;
      if (f.kind === "text") {
        input = el("input", {type: "search", placeholder: "contains…", value: state.filter[f.key] || ""});
        input.addEventListener("input", () => update(f.key, input.value.trim()));
      } else {
        input = el("select", {}, [el("option", {value: "", textContent: "all"})]);
        const ordered = rows.slice().sort(compare(f.key, "asc"));
        const values = [...new Set(ordered.map(r => token(f.key, r.row[f.key])))];
        const want = state.filter[f.key];
        if (want && !values.includes(want)) values.push(want);  // a fragment's value that no row has
        values.forEach(v => input.append(el("option", {value: v, textContent: v})));
        input.value = want || "";
        input.addEventListener("change", () => update(f.key, input.value));
      }
      input.name = f.key;
      label.append(input);
      form.append(label);
    });
    const reset = el("button", {type: "button", textContent: "Reset"});
    reset.addEventListener("click", () => {
      state.filter = {}; state.sort = null; state.dir = "asc";
      form.querySelectorAll("select, input").forEach(i => { i.value = ""; });
      render(); writeLocation();
    });
    form.append(reset);
    if (hasSecondary) {
      const hidden = columns.filter(c => !c.primary).length;
      const toggle = el("button", {type: "button", id: "toggle-columns", className: "toggle-columns"});
      const label = () => {
        toggle.textContent = state.allColumns ? "Show fewer columns" : "Show all columns (" + hidden + " more)";
        toggle.setAttribute("aria-pressed", String(state.allColumns));
      };
      toggle.addEventListener("click", () => { state.allColumns = !state.allColumns; label(); render(); writeLocation(); });
      label();
      form.append(toggle);
    }
    form.addEventListener("submit", e => e.preventDefault());
  }

  function update(key, value) { state.filter[key] = value; render(); writeLocation(); }

  function sortBy(key) {
    if (state.sort === key) state.dir = state.dir === "asc" ? "desc" : "asc";
    else { state.sort = key; state.dir = defaultDir(byKey[key]); }
    render(); writeLocation();
  }

  function cellClass(cols, col, i) {
    const names = [];
    if (col.numeric) names.push("num");
    if (col.group === "provenance") names.push("prov");
    if (col.group === "provenance" && (i === 0 || cols[i - 1].group !== "provenance")) names.push("prov-first");
    if (col.key === "robust_mean" || col.key === "standard_mean") names.push("score");
    if (!col.primary) names.push("secondary");
    return names.join(" ");
  }

  function headerRow(cols) {
    return el("tr", {}, cols.map((col, i) => {
      const active = state.sort === col.key;
      const th = el("th", {className: cellClass(cols, col, i), scope: "col", title: "sort by " + col.label},
        [col.label, el("span", {className: "arrow", textContent: active ? (state.dir === "asc" ? "▲" : "▼") : ""})]);
      th.dataset.key = col.key;
      th.setAttribute("aria-sort", active ? (state.dir === "asc" ? "ascending" : "descending") : "none");
      th.addEventListener("click", () => sortBy(col.key));
      return th;
    }));
  }

  // per score key, the best (highest) value among the shown entries other than the reference; none if under two
  function bestValues(shown) {
    const best = {};
    BEST_KEYS.forEach(key => {
      const values = shown.filter(r => !isReference(r.row) && typeof r.row[key] === "number").map(r => r.row[key]);
      if (values.length > 1) best[key] = Math.max(...values);
    });
    return best;
  }

  function bodyRow(cols, row, best) {
    const reference = isReference(row);
    const tr = el("tr", {className: reference ? "entry reference" : "entry"}, cols.map((col, i) => {
      const v = row[col.key];
      const isBest = !reference && col.key in best && v === best[col.key];
      const td = el("td", {className: cellClass(cols, col, i) + (isBest ? " best" : ""), textContent: display(col, v)});
      td.dataset.col = col.key;
      if (!isMissing(v)) td.dataset.value = String(v);
      if (col.format === "date" && !isMissing(v)) td.title = String(v);
      return td;
    }));
    if (reference) tr.title = "reference: the full training set";
    return tr;
  }

  function render() {
    const order = rows.filter(r => matches(r.row));
    if (state.sort) order.sort(compare(state.sort, state.dir));
    document.querySelectorAll("section.protocol").forEach(section => {
      const name = section.dataset.protocol, version = Number(section.dataset.version);
      const ownRows = rows.filter(r => r.row.protocol === name && r.row.version === version);
      const own = ownRows.length;
      // a per-attack column only where this version ran that attack
      const cols = columns.filter(c => !c.key.startsWith(ATTACK_PREFIX) || ownRows.some(r => !isMissing(r.row[c.key])));
      const shown = order.filter(r => r.row.protocol === name && r.row.version === version);
      const best = bestValues(shown);
      const body = shown.length ? shown.map(r => bodyRow(cols, r.row, best))
        : [el("tr", {className: "empty"}, [el("td", {colSpan: cols.length, textContent: "No entry matches the filters."})])];
      const table = el("table", {className: state.allColumns || !hasSecondary ? "all-columns" : "primary-columns"}, [el("thead", {}, [headerRow(cols)]), el("tbody", {}, body)]);
      section.querySelector(".table-wrap").replaceChildren(table);
      section.querySelector(".count").textContent = shown.length === own
        ? own + (own === 1 ? " entry" : " entries") : shown.length + " of " + own + " entries shown";
    });
  }

  readLocation();
  buildFilters();
  render();
})();
