// The partner's dashboard: log in with the partner key, then four panels read from this service's JSON API.
// The key lives in sessionStorage (this tab only) and travels only in the Authorization header of fetch().
"use strict";

(() => {
  const {el, fmt, table} = window.RecsysRender;
  const RecsysPanels = window.RecsysPanels;
  const KEY = "recsys.dashboard.key";
  const SAMPLE_USERS = 3, FEED_K = 5;
  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, message, fix) {
      super(message);
      this.status = status;
      this.fix = fix;
    }
  }

  async function api(path, body) {
    const headers = {Authorization: "Bearer " + (sessionStorage.getItem(KEY) || "")};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {method: body === undefined ? "GET" : "POST", headers, cache: "no-store",
      credentials: "omit", body: body === undefined ? undefined : JSON.stringify(body)});
    let data = null;
    try { data = await resp.json(); } catch (_) { data = null; }
    if (!resp.ok) {
      const message = data && (data.error || data.detail) ? String(data.error || data.detail) : resp.statusText;
      throw new ApiError(resp.status, message, data && data.fix);
    }
    return data;
  }

  const partnerPath = (media, what) => `/v1/partners/${encodeURIComponent(media)}/${what}`;

  // ---- panels: each is a function (partner id) -> DOM nodes; an error becomes its message in the panel
  function showError(body, err) {
    const status = err instanceof ApiError ? err.status : 0;
    body.dataset.state = status === 403 ? "forbidden" : "error";
    const head = status === 403 ? "not allowed" : status === 404 ? "not available on this service"
      : status ? `error ${status}` : "error";
    const nodes = [el("p", {class: "error", role: "alert"}, `${head}: ${err.message}`)];
    if (err.fix) nodes.push(el("p", {class: "muted"}, `What to do: ${err.fix}`));
    body.replaceChildren(...nodes);
  }

  let shown = 0;  // which showPartner call the panels belong to: an answer to an earlier one is dropped

  async function fill(panelId, build, media, call) {
    const body = document.querySelector(`#${panelId} .body`);
    body.dataset.state = "loading";
    body.replaceChildren(el("p", {class: "muted"}, "loading…"));
    try {
      const nodes = await build(media);
      if (call !== shown) return;
      body.replaceChildren(...nodes.filter(Boolean));
      body.dataset.state = "ok";
    } catch (err) {
      if (call === shown) showError(body, err);
    }
  }

  function commission(item) {
    if (typeof item.commission === "number") return item.commission;
    const price = typeof item.price_paid === "number" ? item.price_paid : item.price;
    return typeof item.commission_rate === "number" && typeof price === "number" ? price * item.commission_rate : null;
  }

  function feedBlock(feed) {
    // the commission column only where the service's feed gives what it takes (a rate, or the commission)
    const paid = feed.items.some((it) => commission(it) !== null);
    const rows = feed.items.map((it) => ({rank: it.rank, title: it.title ?? `item ${it.item_id}`,
      price: it.price, ...(it.price_paid !== undefined ? {price_paid: it.price_paid} : {}),
      ...(paid ? {commission: commission(it)} : {}), reason: it.reason}));
    const notes = [feed.fallback ? `fallback: ${feed.fallback}` : null, ...(feed.notes || [])].filter(Boolean);
    return el("div", {class: "feed", "data-user": String(feed.user_id)},
      el("h3", {}, `User ${feed.user_id}`, el("span", {class: "muted"}, ` · objective ${feed.objective || "—"}`)),
      notes.length ? el("p", {class: "muted"}, notes.join("; ")) : null,
      rows.length ? table(rows, Object.keys(rows[0])) : el("p", {class: "muted"}, "an empty feed"));
  }

  async function feedPanel(media) {
    const audience = await api(partnerPath(media, "audience") + "?limit=200");
    if (!audience.ids.length) return [el("p", {class: "muted"}, "no users in this partner's audience yet")];
    const step = Math.max(1, Math.floor(audience.ids.length / SAMPLE_USERS));
    const users = audience.ids.filter((_, i) => i % step === 0).slice(0, SAMPLE_USERS);
    const feeds = await Promise.all(users.map((u) => api("/v1/recommend", {user_id: u, media_id: media, k: FEED_K})));
    const paid = feeds.some((f) => f.items.some((it) => commission(it) !== null));
    return [el("p", {class: "muted"}, `${fmt(audience.total)} users in the audience; the feeds of ${users.length} of them` +
      (paid ? " (commission: the price paid × the item's commission rate)"
        : " (this service's feed answers carry no commission rates, so no commission column)")),
    ...feeds.map(feedBlock)];
  }

  // a partner endpoint drawn by its panel renderer (panels.js), with an optional query string
  const jsonPanel = (what, draw, query = "") => async (media) => draw(await api(partnerPath(media, what) + query));

  const PANELS = [["panel-feed", feedPanel], ["panel-insight", jsonPanel("insight", RecsysPanels.insight)],
    ["panel-funnel", jsonPanel("funnel", RecsysPanels.funnel)], ["panel-carry", jsonPanel("carry", RecsysPanels.carry, "?n=20")]];

  function showPartner(media) {
    const call = ++shown;
    return Promise.all(PANELS.map(([id, build]) => fill(id, build, media, call)));
  }

  // ---- login
  async function enter() {
    const status = await api("/v1/model");
    const partners = status.partners || [];
    $("who-label").textContent = partners.length === 1 ? `Partner ${partners[0]}` : `Admin · ${partners.length} partners`;
    $("model-version").textContent = `model ${status.model_version || "loading"}`;
    $("partners").replaceChildren(...partners.map((p) => el("option", {value: p})));
    $("partner").value = partners[0] || "";
    $("login").hidden = true;
    $("who").hidden = false;
    $("dashboard").hidden = false;
    if (partners.length) await showPartner(partners[0]);
  }

  async function login(event) {
    event.preventDefault();
    $("login-error").textContent = "";
    sessionStorage.setItem(KEY, $("key").value.trim());
    $("key").value = "";
    try {
      await enter();
    } catch (err) {
      sessionStorage.removeItem(KEY);
      $("login-error").textContent = err.status === 401 ? `Log-in refused: ${err.message}` : `Error: ${err.message}`;
    }
  }

  function logout() {
    sessionStorage.removeItem(KEY);
    shown += 1;
    for (const body of document.querySelectorAll(".panel .body")) {
      body.replaceChildren();
      body.dataset.state = "empty";
    }
    $("dashboard").hidden = true;
    $("who").hidden = true;
    $("login").hidden = false;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    $("partner-form").addEventListener("submit", (event) => {
      event.preventDefault();
      showPartner($("partner").value.trim());
    });
    if (sessionStorage.getItem(KEY)) enter().catch(logout);
  });
})();
