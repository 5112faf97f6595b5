// The dashboard's insight, funnel and carry panels: their endpoints' documented JSON keys drawn as figures,
// charts and tables (recsys.partners.insight.audience_insight, funnel.lifecycle_funnel, selection.products_to_carry).
// Keys a panel does not know are still shown (render() draws any JSON), so a newer service loses nothing.
"use strict";

(() => {
  const {el, bars, stacked, stats, table, folded, render, fmt, humanKey} = window.RecsysRender;

  const section = (title, ...nodes) => el("div", {class: "section"}, el("h3", {}, title), ...nodes);
  const notes = (list) => (list && list.length ? el("ul", {class: "notes"}, ...list.map((n) => el("li", {}, n))) : null);
  const pick = (rows, keys) => rows.map((r) => Object.fromEntries(keys.filter((k) => k in r).map((k) => [k, r[k]])));

  // rows of value, users, share, network_share, lift -> the audience's share (bar) against the network's (tick)
  function breakdown(rows, title, suppressed) {
    if (!rows || !rows.length) {
      return el("p", {class: "muted"}, `every ${title} has fewer audience users than the minimum group` +
        (suppressed ? ` (${suppressed} suppressed)` : ""));
    }
    const lift = (i) => (typeof rows[i].lift === "number" ? ` · lift ${fmt(rows[i].lift)}` : "");
    return el("div", {class: "breakdown"},
      bars(rows.map((r) => [r.value, r.share, r.network_share]), "share of the audience (tick: the network's)",
        "share", lift),
      folded("table", table(pick(rows, ["value", "users", "share", "network_share", "lift"]), ["value", "users", "share",
        "network_share", "lift"].filter((k) => k in rows[0]))));
  }

  function rateRow(name, r) {
    const p = r.partner || {}, n = r.network || {};
    const what = {ctr: "CTR (clicks per impression)", cvr: "CVR (purchases per click)"}[name] || name;
    return {rate: what, partner: p.rate, ci_low: p.ci_low, ci_high: p.ci_high, network: n.rate, trials: p.trials};
  }

  function insight(data) {
    const out = [], grid = el("div", {class: "grid"});
    const size = data.size || {};
    out.push(stats([["audience users", size.audience_users], ["reached users", size.reached_users],
      ["buyers", size.buyers], ["network audience", size.network_audience_users]]));
    if (data.rates) {
      const rows = Object.entries(data.rates).filter(([, r]) => r && typeof r === "object").map(([k, r]) => rateRow(k, r));
      out.push(section("Click and conversion rates (95% intervals)", table(rows.map((r) => ({...r,
        partner_rate: r.partner, network_rate: r.network})), ["rate", "partner_rate", "ci_low", "ci_high",
        "network_rate", "trials"])));
    }
    if (data.top) {
      for (const [attr, top] of Object.entries(data.top)) {
        const rows = (top && (top.rows || (Array.isArray(top) ? top : null))) || [];
        grid.append(section(`Top ${attr === "category" ? "categories" : attr + "s"}`, breakdown(rows, attr, top && top.suppressed)));
      }
    }
    if (data.profile) {
      for (const [column, part] of Object.entries(data.profile)) {
        if (part && Array.isArray(part.rows)) grid.append(section(`Profile · ${column}`, breakdown(part.rows, column)));
      }
    }
    if (data.spending_power) {
      const sp = data.spending_power;
      for (const which of ["purchased", "engaged"]) {
        const part = sp[which];
        if (part && Array.isArray(part.rows)) {
          grid.append(section(`Spending power · price level ${which} (1 = cheapest fifth of its category)`,
            breakdown(part.rows.map((r) => ({...r, value: `level ${r.value}`})), "price level")));
        }
      }
    }
    if (grid.childElementCount) out.push(grid);
    if (data.merchants && Array.isArray(data.merchants.rows)) {
      const rows = data.merchants.rows.map((r) => ({shop: r.shop, clickers: r.clickers, clicks: r.clicks,
        purchases: r.purchases, cvr: r.cvr && r.cvr.rate, ci_low: r.cvr && r.cvr.ci_low, ci_high: r.cvr && r.cvr.ci_high,
        network_cvr: r.network_cvr, lift: r.lift, converts_well: r.converts_well}));
      out.push(section("Merchants the audience clicks (conversion against the network's)",
        rows.length ? table(rows, Object.keys(rows[0])) : el("p", {class: "muted"}, "none with enough users"),
        data.merchants.converts_well && data.merchants.converts_well.length
          ? el("p", {}, `Converting unusually well: ${data.merchants.converts_well.join(", ")}`) : null));
    }
    for (const key of ["influencers", "activity"]) {
      if (data[key]) out.push(section(humanKey(key), render(data[key], key)));
    }
    out.push(notes(data.notes), data.privacy ? el("p", {class: "muted"}, `Privacy: ${data.privacy}`) : null);
    return out.filter(Boolean);
  }

  function windowLabel(w) {
    const day = (iso) => String(iso).slice(0, 10);
    return w ? `${day(w.start)} – ${day(w.end)}` : "";
  }

  function funnel(data) {
    const stages = data.stages || ["awareness", "interest", "purchase", "loyalty"];
    const windows = data.windows || [];
    const span = String(data.window || "").replace(/ 00:00:00$/, "");
    const out = [el("p", {class: "muted"}, `${data.brand_choice || ""}; windows of ${span}`)];
    const grid = el("div", {class: "grid"});
    out.push(grid);
    for (const brand of data.brands || []) {
      const rows = (data.counts || []).filter((r) => r.brand === brand)
        .map((r) => [windowLabel(windows[r.window]) || `window ${r.window}`, stages.map((s) => [s, r[s]])]);
      const flows = (data.flows || []).filter((f) => f.brand === brand);
      const last = flows[flows.length - 1];
      const flowTable = last && last.matrix ? table((data.flow_stages || []).map((from, i) => ({
        from: from, ...Object.fromEntries((data.flow_stages || []).map((to, j) => [`→ ${to}`, last.matrix[i][j]]))})),
      ["from", ...(data.flow_stages || []).map((s) => `→ ${s}`)]) : null;
      grid.append(el("div", {class: "brand", "data-brand": String(brand)}, el("h3", {}, `Brand ${brand}`),
        stacked(rows, stages, "users per stage and window"),
        flowTable ? el("p", {class: "muted"}, `Users moving from ${windowLabel(windows[last.from_window])} (rows) to ` +
          `${windowLabel(windows[last.to_window])} (columns)`) : null, flowTable));
    }
    if (!(data.brands || []).length) out.push(el("p", {class: "muted"}, "no brand has events on this partner yet"));
    return out;
  }

  function carry(data) {
    const rows = data.items || [];
    if (!rows.length) return [el("p", {class: "muted"}, "no item outside the pool qualifies")];
    const label = (r) => r.title || `item ${r.item_id}`;
    const columns = ["rank", "title", "category", "brand", "paid_price", "commission_rate", "commission_per_1000",
      "category_lift", "reason"].filter((k) => k in rows[0]);
    const brief = ["rank", "title", "paid_price", "commission_rate", "commission_per_1000", "reason"]
      .filter((k) => k in rows[0]);
    return [bars(rows.slice(0, 10).map((r) => [label(r), r.commission_per_1000]),
      "expected commission per 1,000 impressions to this audience", "commission_per_1000"),
    table(rows.slice(0, 5), brief),
    folded(`all ${rows.length} proposals`, table(rows, columns))];
  }

  window.RecsysPanels = {insight, funnel, carry};
})();
