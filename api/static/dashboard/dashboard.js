// ShopPulse dashboard: reads only the public API (/analytics/*), updates live from /analytics/stream (SSE).
// No build step: plain ES2020 served as a file; uPlot (vendored) draws the sales curve.
"use strict";

(() => {
  const LOCALE = navigator.language || "en-US";
  const PANELS = ["sales", "conversion", "active", "products", "breakdown", "customers", "alerts"];
  // Which panels read which rollup asset (the NOTIFY payload names the asset).
  const PANELS_OF_ASSET = {
    sales: ["sales", "breakdown", "alerts"],
    products: ["products"],
    users: ["active", "alerts"],
    funnel: ["conversion", "alerts"],
    customers: ["customers"],
    fx_rates: ["sales", "breakdown", "products"],
  };
  const FRESH_SECONDS = 60;
  const AMBER_SECONDS = 300;

  const $ = (id) => document.getElementById(id);
  const state = { preset: "today", from: "", to: "", tz: "UTC", currency: "USD", dimension: "channel" };
  const metas = {}; // panel -> [meta, ...] of its newest answers
  const probe = { refreshes: 0, busy: false, lastLive: null, events: [] }; // read by the browser tests
  window.shoppulse = probe;
  let alertsAvailable = null; // null = not known yet
  const previousFunnel = { key: null, answer: null, stale: true }; // the previous period changes rarely
  const COALESCE_MS = 250; // the assets of one rollup run arrive together: one refresh for all of them
  const FX_COALESCE_MS = 3000;
  let chart = null;

  // ------------------------------------------------------------------ formatting

  function money(minor, meta) {
    if (minor === null || minor === undefined || !meta || !meta.currency) return "–";
    const exponent = meta.currency_exponent ?? 2;
    return new Intl.NumberFormat(LOCALE, {
      style: "currency",
      currency: meta.currency,
      minimumFractionDigits: exponent,
      maximumFractionDigits: exponent,
    }).format(minor / 10 ** exponent);
  }
  const count = (value) => (value === null || value === undefined ? "–" : new Intl.NumberFormat(LOCALE).format(value));
  const percent = (ratio, digits = 1) =>
    ratio === null || ratio === undefined
      ? "–"
      : new Intl.NumberFormat(LOCALE, { style: "percent", minimumFractionDigits: digits, maximumFractionDigits: digits }).format(ratio);

  function changeText(ratio, label = "vs previous period") {
    if (ratio === null || ratio === undefined) return `<span class="muted">no previous value to compare</span>`;
    const cls = ratio > 0 ? "up" : ratio < 0 ? "down" : "";
    const arrow = ratio > 0 ? "▲" : ratio < 0 ? "▼" : "●";
    const sign = ratio > 0 ? "+" : "";
    return `<span class="${cls}">${arrow} ${sign}${percent(ratio)}</span> ${label}`;
  }

  const escapeHtml = (text) =>
    String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  // ------------------------------------------------------------------ dates

  function localDate(tz, instant = new Date()) {
    // en-CA formats as YYYY-MM-DD.
    return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(instant);
  }
  function isTimeZone(tz) {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: tz });
      return true;
    } catch (error) {
      return false;
    }
  }
  function addDays(isoDate, days) {
    const date = new Date(`${isoDate}T00:00:00Z`);
    date.setUTCDate(date.getUTCDate() + days);
    return date.toISOString().slice(0, 10);
  }
  const daysBetween = (from, to) => Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86400000);

  function presetWindow(preset, tz) {
    const today = localDate(tz);
    switch (preset) {
      case "yesterday":
        return [addDays(today, -1), addDays(today, -1)];
      case "7d":
        return [addDays(today, -6), today];
      case "30d":
        return [addDays(today, -29), today];
      default:
        return [today, today];
    }
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, message, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  async function api(path, params = {}) {
    const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== ""));
    const response = await fetch(query.size ? `${path}?${query}` : path, { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const detail = body && body.detail;
      const message = Array.isArray(detail)
        ? detail.map((d) => `${(d.loc || []).slice(-1)[0] || "request"}: ${d.msg}`).join("; ")
        : detail || `HTTP ${response.status}`;
      throw new ApiError(response.status, message, Number(response.headers.get("Retry-After")) || null);
    }
    return body;
  }

  const salesParams = () => ({ from: state.from, to: state.to, tz: state.tz, currency: state.currency });
  const utcParams = () => ({ from: state.from, to: state.to });
  function previousUtcParams() {
    const days = daysBetween(state.from, state.to) + 1;
    return { from: addDays(state.from, -days), to: addDays(state.from, -1) };
  }

  // ------------------------------------------------------------------ panels

  function setCard(name, valueHtml, changeHtml, raw) {
    const card = $(`card-${name}`);
    const value = card.querySelector(".value");
    value.innerHTML = valueHtml;
    if (raw !== undefined) value.dataset.raw = raw === null ? "" : String(raw);
    card.querySelector(".change").innerHTML = changeHtml || "&nbsp;";
  }

  const loaders = {
    async sales() {
      const days = daysBetween(state.from, state.to) + 1;
      const granularity = days <= 2 ? "hour" : "day";
      const answer = await api("/analytics/sales/timeseries", { ...salesParams(), granularity, compare: "previous_period" });
      const { data, meta } = answer;
      metas.sales = [meta];
      if (!state.currency && meta.currency) {
        state.currency = meta.currency; // the server's reporting currency
        writeControls();
      }
      setCard("net_sales", money(data.totals.net_sales, meta), changeText(data.change && data.change.net_sales), data.totals.net_sales);
      setCard("orders", count(data.totals.orders), changeText(data.change && data.change.orders), data.totals.orders);
      setCard("aov", money(data.totals.aov, meta), changeText(data.change && data.change.aov), data.totals.aov);
      drawCurve(data, meta, granularity);
    },

    async conversion() {
      const previousKey = JSON.stringify(previousUtcParams());
      const [now, before, abandonment] = await Promise.all([
        api("/analytics/funnel", utcParams()),
        previousFunnel.key === previousKey && !previousFunnel.stale
          ? previousFunnel.answer
          : api("/analytics/funnel", previousUtcParams()),
        api("/analytics/carts/abandonment", utcParams()),
      ]);
      Object.assign(previousFunnel, { key: previousKey, answer: before, stale: false });
      metas.conversion = [now.meta, abandonment.meta];
      const rate = now.data.conversion_rate;
      const previous = before.data.conversion_rate;
      let change = `<span class="muted">no previous value to compare</span>`;
      if (rate !== null && previous !== null) {
        const points = (rate - previous) * 100;
        const cls = points > 0 ? "up" : points < 0 ? "down" : "";
        const formatted = new Intl.NumberFormat(LOCALE, { minimumFractionDigits: 1, maximumFractionDigits: 1, signDisplay: "exceptZero" }).format(points);
        change = `<span class="${cls}">${formatted} pp</span> vs previous period`;
      }
      setCard("conversion", percent(rate, 2), change, rate);
      renderFunnel(now.data, abandonment.data);
    },

    async active() {
      const { data, meta } = await api("/analytics/users/active", { window: 5 });
      metas.active = [meta];
      const windows = data.windows;
      const detail = windows
        ? `last 5 min · 1 min ${count(windows["1m"])} · 60 min ${count(windows["60m"])}`
        : `<span class="muted">no complete minute yet</span>`;
      setCard("active", count(data.active_users), detail, data.active_users);
    },

    async products() {
      const target = $("products");
      try {
        const { data, meta } = await api("/analytics/products/top", { ...salesParams(), limit: 10 });
        metas.products = [meta];
        if (!data.items.length) {
          target.innerHTML = `<p class="muted">No product sold in this period.</p>`;
          return;
        }
        target.innerHTML = table(
          ["#", "Product", "Category", "Units", "Net sales"],
          data.items.map((p) => [p.rank, escapeHtml(p.product_id), escapeHtml(p.category), count(p.units), money(p.net_sales, meta)]),
          [true, false, false, true, true],
          `Top ${data.items.length} of ${count(data.total_products)} products by net sales`,
        );
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 422) throw error;
        metas.products = [];
        target.innerHTML = `<p class="muted">${escapeHtml(error.message)}</p>`;
      }
    },

    async breakdown() {
      const { data, meta } = await api("/analytics/sales/breakdown", { ...salesParams(), dimension: state.dimension });
      metas.breakdown = [meta];
      const target = $("breakdown");
      if (!data.items.length) {
        target.innerHTML = `<p class="muted">No sales in this period.</p>`;
        return;
      }
      const top = Math.max(1, ...data.items.map((item) => Math.abs(item.net_sales)));
      target.innerHTML = table(
        [state.dimension[0].toUpperCase() + state.dimension.slice(1), "", "Orders", "Net sales"],
        data.items.map((item) => [
          escapeHtml(item.value),
          `<div class="bar" style="width:${((100 * Math.abs(item.net_sales)) / top).toFixed(1)}%"></div>`,
          count(item.orders),
          money(item.net_sales, meta),
        ]),
        [false, false, true, true],
        `Net sales by ${state.dimension}; all: ${money(data.totals.net_sales, meta)} from ${count(data.totals.orders)} orders`,
      );
    },

    async customers() {
      const { data, meta } = await api("/analytics/customers/returning", utcParams());
      metas.customers = [meta];
      const t = data.totals;
      $("customers").innerHTML = table(
        ["", "Customers", "Orders"],
        [
          ["First-time", count(t.first_time_customers), count(t.first_time_orders)],
          ["Returning", count(t.returning_customers), count(t.returning_orders)],
          ["All", count(t.customers), count(t.orders)],
        ],
        [false, true, true],
        `Returning customer rate: ${percent(t.returning_customer_rate)} (customer-days)`,
      );
    },

    async alerts() {
      const target = $("alerts");
      if (alertsAvailable === null) {
        const schema = await api("/openapi.json");
        alertsAvailable = Boolean(schema.paths && schema.paths["/analytics/alerts"]);
      }
      if (!alertsAvailable) {
        metas.alerts = [];
        target.innerHTML = `<p class="muted">This server does not report alerts.</p>`;
        return;
      }
      const { data, meta } = await api("/analytics/alerts", utcParams());
      metas.alerts = [meta];
      const alerts = (data && data.alerts) || [];
      if (!alerts.length) {
        target.innerHTML = `<p class="muted">No alert in this period.</p>`;
        return;
      }
      const hour = new Intl.DateTimeFormat(LOCALE, { timeZone: state.tz, dateStyle: "medium", timeStyle: "short" });
      target.innerHTML = `<ul class="alerts-list">${alerts
        .map(
          (a) => `<li><span class="severity-${escapeHtml(a.severity)}">${escapeHtml(a.severity)}</span>
            ${a.direction === "drop" ? "▼" : "▲"} <strong>${escapeHtml(a.rule)}</strong>
            · ${escapeHtml(hour.format(new Date(a.hour_start)))}<br>${escapeHtml(a.message)}
            <span class="muted">(observed ${count(a.observed)}, baseline ${count(a.baseline)}${
              a.score === null || a.score === undefined ? "" : `, score ${Number(a.score).toFixed(1)}`
            })</span></li>`,
        )
        .join("")}</ul>`;
    },
  };

  function table(headers, rows, numeric, caption) {
    const head = headers.map((h, i) => `<th scope="col"${numeric[i] ? ' class="num"' : ""}>${h}</th>`).join("");
    const body = rows
      .map((row) => `<tr>${row.map((cell, i) => `<td${numeric[i] ? ' class="num"' : ""}>${cell}</td>`).join("")}</tr>`)
      .join("");
    return `<table><caption class="muted">${caption}</caption><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
  }

  function renderFunnel(funnel, abandonment) {
    const names = {
      sessions: "Sessions",
      product_view_sessions: "Viewed a product",
      cart_sessions: "Added to cart",
      checkout_sessions: "Checked out",
      purchase_sessions: "Purchased",
    };
    const rows = funnel.stages.map((stage, i) => [
      names[stage.stage] || escapeHtml(stage.stage),
      count(stage.sessions),
      percent(stage.rate_from_start),
      i === 0 || stage.rate_from_previous === null ? "" : percent(1 - stage.rate_from_previous),
    ]);
    const rate = abandonment.totals.abandonment_rate;
    $("funnel").innerHTML = table(
      ["Stage", "Sessions", "Of all", "Drop-off"],
      rows,
      [false, true, true, true],
      `Cart abandonment: ${percent(rate)} (${count(abandonment.totals.cart_sessions)} cart sessions, ${count(
        abandonment.totals.purchase_sessions,
      )} purchase sessions)`,
    );
  }

  function drawCurve(data, meta, granularity) {
    const container = $("curve");
    const exponent = meta.currency_exponent ?? 2;
    const xs = data.series.map((point) => Date.parse(point.start) / 1000);
    const now = data.series.map((point) => point.net_sales / 10 ** exponent);
    const before = data.series.map((_, i) => {
      const point = data.previous && data.previous.series[i];
      return point ? point.net_sales / 10 ** exponent : null;
    });
    $("curve-sub").textContent = `(per ${granularity}, ${meta.currency}, ${state.tz})`;
    const axisMoney = new Intl.NumberFormat(LOCALE, { style: "currency", currency: meta.currency, notation: "compact", maximumFractionDigits: 1 });
    const width = Math.max(280, container.clientWidth);
    const options = {
      width,
      height: 260,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), state.tz),
      scales: { x: { time: true } },
      legend: { show: false },
      series: [
        {},
        { label: "this period", stroke: "#2457c5", width: 2, fill: "rgba(36,87,197,0.08)", value: (_, v) => (v === null ? "–" : money(Math.round(v * 10 ** exponent), meta)) },
        { label: "previous period", stroke: "#9aa3ae", width: 2, dash: [6, 4], value: (_, v) => (v === null ? "–" : money(Math.round(v * 10 ** exponent), meta)) },
      ],
      axes: [{}, { values: (_, ticks) => ticks.map((v) => axisMoney.format(v)), size: 70 }],
    };
    if (chart) chart.destroy();
    container.innerHTML = "";
    chart = new uPlot(options, [xs, now, before], container);
  }

  // ------------------------------------------------------------------ refresh engine

  const dirty = new Set();
  let running = false;
  let generation = 0;

  function showProblem(message) {
    const box = $("problem");
    box.hidden = !message;
    box.textContent = message || "";
  }

  let liveCause = null; // the live event whose refresh is pending (for window.shoppulse.lastLive)

  async function refresh(panels, cause = null) {
    panels.forEach((panel) => dirty.add(panel));
    liveCause = liveCause || cause;
    if (running) return;
    running = true;
    probe.busy = true;
    try {
      while (dirty.size) {
        const batch = [...dirty];
        dirty.clear();
        const batchCause = liveCause;
        liveCause = null;
        const started = generation;
        const results = await Promise.allSettled(batch.map((panel) => loaders[panel]()));
        if (started !== generation) continue; // the controls changed meanwhile: their refresh is queued
        const failures = results.filter((r) => r.status === "rejected").map((r) => r.reason);
        const retry = failures.find((e) => e instanceof ApiError && (e.status === 429 || e.status === 503));
        showProblem(failures.length ? [...new Set(failures.map((e) => e.message))].join(" · ") : "");
        if (retry) setTimeout(() => refresh(batch), 1000 * (retry.retryAfter || 5));
        probe.refreshes += 1;
        updateFreshness();
        if (batchCause) probe.lastLive = { ...batchCause, renderedAt: performance.timeOrigin + performance.now() };
      }
    } finally {
      running = false;
      probe.busy = false;
    }
  }

  function updateFreshness() {
    const badge = $("freshness");
    const all = Object.values(metas).flat().filter(Boolean);
    if (!all.length) return;
    if (all.every((m) => m.complete)) {
      badge.dataset.state = "final";
      badge.textContent = "final numbers";
      return;
    }
    const newest = Math.max(...all.map((m) => (m.as_of ? Date.parse(m.as_of) : -Infinity)));
    if (!Number.isFinite(newest)) {
      badge.dataset.state = "red";
      badge.textContent = "not materialized yet";
      return;
    }
    const age = Math.max(0, Math.round((Date.now() - newest) / 1000));
    badge.dataset.state = age <= FRESH_SECONDS ? "fresh" : age <= AMBER_SECONDS ? "amber" : "red";
    const ago =
      age < 120 ? `${age} s` : age < 7200 ? `${Math.round(age / 60)} min` : age < 172800 ? `${Math.round(age / 3600)} h` : `${Math.round(age / 86400)} days`;
    badge.textContent = `updated ${ago} ago`;
    badge.title = `newest answer materialized at ${new Date(newest).toISOString()}`;
  }

  // ------------------------------------------------------------------ live updates (SSE)

  function panelsFor(change) {
    // Only panels whose window reads the changed UTC day (local windows reach a day further either side).
    const panels = PANELS_OF_ASSET[change.asset] || ["alerts"];
    if (!change.partition || change.asset === "users") return panels;
    const previous = previousUtcParams();
    const inCurrent = addDays(state.from, -1) <= change.partition && change.partition <= addDays(state.to, 1);
    const inPrevious = addDays(previous.from, -1) <= change.partition && change.partition <= addDays(previous.to, 1);
    if (inPrevious) previousFunnel.stale = true;
    // sales and conversion show the previous period too
    return panels.filter((panel) => inCurrent || (inPrevious && (panel === "sales" || panel === "conversion")));
  }

  const pending = { panels: new Set(), cause: null, timer: null, due: Infinity };
  function schedule(panels, cause) {
    // fx_rates lands first in each rollup run, ~1-2 s before the sales it converts: wait for them.
    const delay = cause.asset === "fx_rates" ? FX_COALESCE_MS : COALESCE_MS;
    panels.forEach((panel) => pending.panels.add(panel));
    if (cause.asset !== "fx_rates" || !pending.cause) pending.cause = cause;
    const due = performance.now() + delay;
    if (due >= pending.due) return;
    clearTimeout(pending.timer);
    pending.due = due;
    pending.timer = setTimeout(() => {
      const batch = [...pending.panels];
      const first = pending.cause;
      Object.assign(pending, { panels: new Set(), cause: null, timer: null, due: Infinity });
      refresh(batch, first);
    }, delay);
  }

  function connectLive() {
    const badge = $("live");
    const source = new EventSource("/analytics/stream");
    source.addEventListener("ready", () => {
      badge.dataset.state = "on";
      badge.textContent = "live";
    });
    source.addEventListener("materialized", (event) => {
      const change = JSON.parse(event.data);
      const receivedAt = performance.timeOrigin + performance.now();
      probe.events.push({ id: event.lastEventId, ...change, receivedAt });
      const panels = panelsFor(change);
      if (panels.length) schedule(panels, { id: event.lastEventId, asset: change.asset, partition: change.partition, receivedAt });
    });
    source.addEventListener("reset", (event) => {
      probe.events.push({ id: event.lastEventId, ...JSON.parse(event.data) });
      previousFunnel.stale = true;
      refresh(PANELS);
    });
    source.onerror = () => {
      badge.dataset.state = "connecting";
      badge.textContent = "live: reconnecting";
      if (source.readyState === EventSource.CLOSED) {
        // The server refused (e.g. 503: too many streams) or answered something else: retry ourselves.
        setTimeout(() => {
          connectLive();
          refresh(PANELS);
        }, 10000);
      }
    };
  }

  // ------------------------------------------------------------------ controls

  function readUrl() {
    const params = new URLSearchParams(location.search);
    state.tz = params.get("tz") || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    if (!isTimeZone(state.tz)) {
      showProblem(`Unknown time zone ${state.tz}: showing UTC.`);
      state.tz = "UTC";
    }
    state.currency = (params.get("currency") || "").toUpperCase(); // empty: the server's reporting currency
    state.dimension = ["channel", "country", "device"].includes(params.get("dimension")) ? params.get("dimension") : "channel";
    const from = params.get("from");
    const to = params.get("to");
    state.preset = params.get("preset") || (from || to ? "custom" : "today");
    if (state.preset === "custom") {
      state.to = to || from || localDate(state.tz);
      state.from = from || state.to;
    } else {
      [state.from, state.to] = presetWindow(state.preset, state.tz);
    }
  }

  function writeControls() {
    for (const radio of document.querySelectorAll('input[name="preset"]')) radio.checked = radio.value === state.preset;
    $("from").value = state.from;
    $("to").value = state.to;
    $("tz").value = state.tz;
    const select = $("currency");
    if (state.currency && ![...select.options].some((o) => o.value === state.currency)) select.add(new Option(state.currency));
    if (state.currency) select.value = state.currency;
    for (const tab of document.querySelectorAll("[data-dimension]")) {
      const selected = tab.dataset.dimension === state.dimension;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
    }
  }

  function writeUrl() {
    const params = new URLSearchParams({ preset: state.preset, tz: state.tz, dimension: state.dimension });
    if (state.currency) params.set("currency", state.currency);
    if (state.preset === "custom") {
      params.set("from", state.from);
      params.set("to", state.to);
    }
    history.replaceState(null, "", `${location.pathname}?${params}`);
  }

  function applyControls() {
    const preset = document.querySelector('input[name="preset"]:checked').value;
    const tz = $("tz").value.trim() || "UTC";
    if (!isTimeZone(tz)) {
      showProblem(`Unknown time zone "${tz}": use an IANA name such as Europe/Paris or America/New_York.`);
      $("tz").focus();
      return;
    }
    state.tz = tz;
    state.currency = $("currency").value;
    state.preset = preset;
    if (preset === "custom") {
      state.from = $("from").value;
      state.to = $("to").value || state.from;
      if (state.from > state.to) [state.from, state.to] = [state.to, state.from];
    } else {
      [state.from, state.to] = presetWindow(preset, state.tz);
    }
    writeControls();
    writeUrl();
    generation += 1;
    refresh(PANELS);
  }

  function selectDimension(tab) {
    state.dimension = tab.dataset.dimension;
    writeControls();
    writeUrl();
    tab.focus();
    refresh(["breakdown"]);
  }

  async function fillCurrencies() {
    // The API's own list of reporting currencies (its OpenAPI enum), when it publishes one.
    try {
      const schema = await api("/openapi.json");
      const operation = schema.paths["/analytics/sales/timeseries"];
      const parameter = operation && operation.get.parameters.find((p) => p.name === "currency");
      const variants = parameter ? parameter.schema.anyOf || [parameter.schema] : [];
      const codes = (variants.find((v) => Array.isArray(v.enum)) || {}).enum;
      if (codes) {
        const select = $("currency");
        select.innerHTML = codes.map((code) => `<option>${escapeHtml(code)}</option>`).join("");
      }
      alertsAvailable = Boolean(schema.paths && schema.paths["/analytics/alerts"]);
    } catch (error) {
      // Keep the built-in list.
    }
  }

  function start() {
    readUrl();
    if (typeof Intl.supportedValuesOf === "function") {
      $("timezones").innerHTML = ["UTC", ...Intl.supportedValuesOf("timeZone")].map((z) => `<option value="${z}"></option>`).join("");
    }
    writeControls();
    $("controls").addEventListener("submit", (event) => {
      event.preventDefault();
      applyControls();
    });
    for (const radio of document.querySelectorAll('input[name="preset"]')) radio.addEventListener("change", applyControls);
    $("currency").addEventListener("change", applyControls);
    $("tz").addEventListener("change", applyControls);
    for (const id of ["from", "to"]) {
      $(id).addEventListener("change", () => {
        document.querySelector('input[name="preset"][value="custom"]').checked = true;
        applyControls();
      });
    }
    const tabs = [...document.querySelectorAll("[data-dimension]")];
    tabs.forEach((tab, i) => {
      tab.addEventListener("click", () => selectDimension(tab));
      tab.addEventListener("keydown", (event) => {
        const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
        if (step) selectDimension(tabs[(i + step + tabs.length) % tabs.length]);
      });
    });
    new ResizeObserver(() => chart && chart.setSize({ width: Math.max(280, $("curve").clientWidth), height: 260 })).observe($("curve"));
    setInterval(updateFreshness, 1000);
    fillCurrencies().then(() => {
      writeControls();
      refresh(PANELS);
      connectLive();
    });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
