// otel_ml's live page: reads page/data every few seconds and draws it with uPlot.
// Text is only ever set with textContent (labels come from the program), never as HTML.
"use strict";
(function () {
  const main = document.querySelector("main");
  const status = document.querySelector(".status");
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
  // chart key ("section|panel|chart") -> {u, marks, last, anomalies}; exposed for the browser tests.
  const charts = new Map();
  const live = { charts: charts, data: null, updated: 0 };
  window.otelMl = live;
  let layout = "";
  let lastOk = 0;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e7)) return v.toExponential(4);
    return String(Number(v.toPrecision(6)));
  }

  function fmtAxis(v) {
    if (v === null || v === undefined) return ""; // a log axis leaves some splits unlabelled
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e7)) return v.toExponential(1);
    return String(Number(v.toPrecision(4)));
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString();
  }

  function lastNumber(values) {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
    return null;
  }

  function drawMarks(u) {
    const entry = charts.get(u.otelKey);
    if (!entry || !entry.marks.length) return;
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#d62728";
    ctx.fillStyle = "#d62728";
    ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
    for (const mark of entry.marks) {
      const x = Math.round(u.valToPos(mark.t, "x", true));
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.beginPath();
      const s = 5 * devicePixelRatio;
      ctx.moveTo(x - s, u.bbox.top);
      ctx.lineTo(x + s, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + 1.6 * s);
      ctx.fill();
    }
    ctx.restore();
  }

  function chartWidth(box) {
    return Math.max(300, Math.floor(box.getBoundingClientRect().width || 420));
  }

  function makeChart(key, box, chart, t) {
    const series = [{}].concat(
      chart.series.map((s, i) => ({
        label: s.label,
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        points: { size: 4 },
        value: (u, v) => fmt(v),
      })),
    );
    const opts = {
      width: chartWidth(box),
      height: 190,
      series: series,
      scales: chart.log ? { x: { time: true }, y: { distr: 3 } } : { x: { time: true } },
      axes: [{}, { size: 70, values: (u, splits) => splits.map(fmtAxis) }],
      hooks: { draw: [drawMarks] },
    };
    const u = new uPlot(opts, [t].concat(chart.series.map((s) => s.values)), box);
    u.otelKey = key;
    return u;
  }

  function signature(data) {
    return JSON.stringify(
      data.sections.map((s) => [s.name, s.panels.map((p) => [p.title, p.charts.map((c) => [c.title, c.series.map((x) => x.label)])])]),
    ) + (data.slow_steps.length ? "slow" : "") + (data.empty ? "empty" : "");
  }

  function build(data) {
    for (const entry of charts.values()) entry.u.destroy();
    charts.clear();
    main.replaceChildren();
    if (data.empty) {
      main.append(el("p", "empty", data.empty));
      return;
    }
    for (const section of data.sections) {
      const box = el("section", "section");
      box.dataset.section = section.name;
      box.append(el("h2", null, section.name));
      for (const panel of section.panels) {
        const pbox = el("div", "panel");
        pbox.dataset.panel = panel.title;
        pbox.append(el("h3", null, panel.title));
        pbox.append(el("p", "facts"));
        const grid = el("div", "charts");
        pbox.append(grid);
        box.append(pbox);
        main.append(box);
        for (const chart of panel.charts) {
          const key = section.name + "|" + panel.title + "|" + chart.title;
          const cbox = el("div", "chart");
          cbox.dataset.chart = chart.title;
          cbox.append(el("h4", null, chart.title));
          const last = el("p", "last");
          cbox.append(last);
          const plot = el("div", "plot");
          cbox.append(plot);
          const anomalies = el("p", "anomalies");
          cbox.append(anomalies);
          grid.append(cbox);
          charts.set(key, { u: null, marks: chart.marks, last: last, anomalies: anomalies, plot: plot, box: cbox });
          charts.get(key).u = makeChart(key, plot, chart, data.t);
        }
      }
      if (section.name === "Training" && data.slow_steps.length) box.append(slowTable());
    }
  }

  function slowTable() {
    const wrap = el("div", "panel slow-steps");
    wrap.append(el("h3", null, "Slowest recent steps (click a row for its span)"));
    const table = el("table", "slow");
    const head = el("tr");
    for (const name of ["ended", "run", "epoch", "step", "duration", "slow above", "batch loss", "trace id"]) head.append(el("th", null, name));
    const thead = el("thead");
    thead.append(head);
    table.append(thead);
    table.append(el("tbody"));
    wrap.append(table);
    return wrap;
  }

  function fillSlowTable(rows) {
    const body = main.querySelector("table.slow tbody");
    if (!body) return;
    const spans = rows.map((r) => r.span_id).join(",");
    if (body.dataset.spans === spans) return; // unchanged: keep the rows (and those opened) as they are
    body.dataset.spans = spans;
    const open = new Set([...body.querySelectorAll("tr.detail")].filter((r) => !r.hidden).map((r) => r.dataset.span));
    body.replaceChildren();
    const sorted = rows.slice().sort((a, b) => (b.duration || 0) - (a.duration || 0));
    for (const row of sorted) {
      const tr = el("tr", "row");
      tr.dataset.trace = row.trace_id;
      const ended = row.start !== null ? clock(row.start + (row.duration || 0)) : "–";
      const cells = [ended, row["ml.run.name"] ?? "–", row["ml.epoch"] ?? "–", row["ml.step"] ?? "–",
        row.duration !== null ? fmt(row.duration * 1000) + " ms" : "–",
        row["ml.slow_threshold"] !== null && row["ml.slow_threshold"] !== undefined ? fmt(row["ml.slow_threshold"] * 1000) + " ms" : "–",
        row["ml.batch.loss"] === null ? "NaN" : fmt(row["ml.batch.loss"])];
      for (const c of cells) tr.append(el("td", null, String(c)));
      const td = el("td");
      const link = el("a", "trace", row.trace_id);
      link.href = "slow-steps?trace_id=" + encodeURIComponent(row.trace_id);
      td.append(link);
      tr.append(td);
      const detail = el("tr", "detail");
      detail.dataset.span = row.span_id;
      const dtd = el("td");
      dtd.colSpan = 8;
      dtd.textContent = "span " + row.name + " · trace " + row.trace_id + " · span " + row.span_id +
        " · started " + (row.start !== null ? new Date(row.start * 1000).toISOString() : "–") +
        " · " + fmt(row.duration) + " s";
      detail.append(dtd);
      detail.hidden = !open.has(row.span_id);
      tr.addEventListener("click", (event) => {
        if (event.target.tagName === "A") return;
        detail.hidden = !detail.hidden;
      });
      body.append(tr, detail);
    }
  }

  function update(data) {
    for (const section of data.sections) {
      for (const panel of section.panels) {
        const pbox = [...main.querySelectorAll(".panel")].find((p) => p.dataset.panel === panel.title);
        const facts = pbox && pbox.querySelector(".facts");
        if (facts) {
          facts.replaceChildren();
          for (const [name, value] of panel.facts) {
            const f = el("span", "fact", name);
            f.dataset.fact = name;
            f.append(el("b", null, value));
            facts.append(f);
          }
        }
        for (const chart of panel.charts) {
          const entry = charts.get(section.name + "|" + panel.title + "|" + chart.title);
          if (!entry) continue;
          entry.marks = chart.marks;
          entry.u.setData([data.t].concat(chart.series.map((s) => s.values)));
          entry.box.dataset.points = String(data.t.length);
          entry.box.dataset.marks = String(chart.marks.length);
          entry.last.textContent = chart.series.map((s) => s.label + " " + fmt(lastNumber(s.values))).join(" · ");
          const kinds = new Map();
          for (const m of chart.marks) kinds.set(m.kind, (kinds.get(m.kind) || 0) + m.count);
          entry.anomalies.textContent = chart.marks.length
            ? "▼ anomalies: " + [...kinds].map(([k, n]) => k + " ×" + n).join(", ") + " (first at " + clock(chart.marks[0].t) + ")"
            : "";
        }
      }
    }
    fillSlowTable(data.slow_steps);
  }

  function render(data) {
    const sig = signature(data);
    if (sig !== layout) {
      build(data);
      layout = sig;
    }
    update(data);
    live.data = data;
    live.updated += 1;
    const span = data.t.length > 1 ? Math.round(data.t[data.t.length - 1] - data.t[0]) : 0;
    status.className = "status";
    status.textContent = data.points + " samples every " + data.interval + " s (" + span + " s of history, keeps " +
      data.capacity + ") · updated " + clock(data.now);
  }

  function schedule(seconds) {
    setTimeout(refresh, seconds * 1000);
  }

  async function refresh() {
    let data = null;
    try {
      const response = await fetch("page/data", { cache: "no-store" });
      if (response.ok) data = await response.json();
    } catch (error) {
      data = null;
    }
    if (data === null) {
      status.className = "status stale";
      status.textContent = "the endpoint does not answer (has the program ended?)" + (lastOk ? "; last update " + clock(lastOk) : "");
      schedule(5);
      return;
    }
    lastOk = data.now;
    render(data);
    schedule(Math.min(5, Math.max(1, data.interval)));
  }

  window.addEventListener("resize", () => {
    for (const entry of charts.values()) entry.u.setSize({ width: chartWidth(entry.plot), height: 190 });
  });
  refresh();
})();
