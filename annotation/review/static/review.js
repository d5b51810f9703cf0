// The review pages: the track list (filters, pages, corrections per tag) and a track's page (player,
// probabilities, corrections, keyboard shortcuts). Plain DOM calls on the JSON API of review/app.py.
"use strict";

const $ = (selector) => document.querySelector(selector);
let signedIn = null;  // the signed-in reviewer's name when the server asks reviewers to sign in
const who = () => signedIn || $("#who").value.trim();
const fmt = (x, digits = 2) => (x === null || x === undefined ? "" : Number(x).toFixed(digits));

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function say(text, ok = false) {
  const box = $("#message");
  box.textContent = text;
  box.classList.toggle("ok", ok);
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) {
    const detail = typeof data.error === "string" ? data.error : JSON.stringify(data.detail || data.error);
    throw new Error(detail);
  }
  return data;
}

function rememberWho() {
  const saved = localStorage.getItem("coldtag-review-who");
  if (saved) $("#who").value = saved;
  $("#who").addEventListener("change", () => localStorage.setItem("coldtag-review-who", who()));
}

// Signed in, the header names the reviewer the server records, with a sign-out button, instead of a name field.
async function identify() {
  let me;
  try { me = await api("/api/me"); } catch (error) { return say(error.message); }
  if (!me.sign_in) return rememberWho();
  signedIn = me.reviewer;
  $("#who").closest("label").replaceWith(element("span", {id: "reviewer"}, `Signed in as ${me.reviewer}`),
    element("form", {method: "post", action: "/signout"}, element("button", {id: "signout"}, "Sign out")));
}

async function goNext(after = "") {
  try {
    const queue = await api(`/api/queue?limit=1&after=${encodeURIComponent(after)}`);
    if (queue.items.length === 0) return say("Every track has been reviewed.", true);
    location.href = `/track?id=${encodeURIComponent(queue.items[0].id)}`;
  } catch (error) { say(error.message); }
}

// ------------------------------------------------------------------------------------------- list

let page = 1;

async function loadList() {
  const form = new FormData($("#filters"));
  const query = new URLSearchParams({page, per_page: 50});
  for (const [key, value] of form) if (value !== "") query.set(key, value);
  if (query.get("sort") === "probability" && !query.get("tag")) query.set("sort", "id");
  history.replaceState(null, "", `/?${query}`);
  let data;
  try { data = await api(`/api/tracks?${query}`); } catch (error) { return say(error.message); }
  say("");
  const body = $("#tracks tbody");
  body.replaceChildren();
  for (const item of data.items) {
    const tags = Object.entries(item.tags).flatMap(([group, labels]) =>
      labels.map((label) => element("span", {class: "tag"}, `${group}/${label}`)));
    const row = element("tr", {class: item.error ? "error" : ""},
      element("td", {}, element("a", {href: `/track?id=${encodeURIComponent(item.id)}`}, item.id)),
      element("td", {}, ...(item.error ? [`${item.error.type}: ${item.error.message}`] : tags),
              ...(item.warnings.length ? [` (${item.warnings.join(", ")})`] : [])),
      element("td", {}, fmt(item.certainty)),
      element("td", {}, fmt(item.probability)),
      element("td", {}, String(item.corrections || "")));
    body.append(row);
  }
  const pages = Math.max(1, Math.ceil(data.total / data.per_page));
  $("#count").textContent = `${data.total} track(s)`;
  $("#page").textContent = `page ${data.page} of ${pages}`;
  $("#prev-page").disabled = page <= 1;
  $("#next-page").disabled = page >= pages;
}

function curve(points) {
  // Precision (y, 0 at the bottom) against threshold (x, 0 at the left), as a small SVG line; each point's
  // title gives its numbers.
  const width = 160, height = 60;
  const xy = points.map((p) => `${(p.threshold * width).toFixed(1)},${((1 - p.precision) * height).toFixed(1)}`);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "curve");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", xy.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#36a");
  svg.append(line);
  for (const [k, point] of points.entries()) {
    const [x, y] = xy[k].split(",");
    const dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    Object.entries({cx: x, cy: y, r: 3, fill: "#36a"}).forEach(([key, value]) => dot.setAttribute(key, value));
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = `p >= ${fmt(point.threshold)}: precision ${fmt(point.precision)} of ${point.n} judged`;
    dot.append(title);
    svg.append(dot);
  }
  return svg;
}

async function loadStats() {
  const stats = await api("/api/stats");
  const select = $("#filters select[name=tag]");
  const table = element("table", {}, element("tr", {}, ...["tag", "confirmed", "added", "removed", "set",
    "precision against threshold"].map((h) => element("th", {}, h))));
  for (const [group, labels] of Object.entries(stats.counts)) {
    for (const [label, counts] of Object.entries(labels)) {
      if ("add" in counts) {
        select.append(element("option", {value: `${group}/${label}`}, `${group}/${label}`));
        $("#verify select[name=tag]").append(element("option", {value: `${group}/${label}`}, `${group}/${label}`));
      }
      const points = (stats.precision[group] || {})[label];
      table.append(element("tr", {}, element("td", {}, `${group}/${label}`),
        ...["confirm", "add", "remove", "set"].map((a) => element("td", {}, a in counts ? String(counts[a]) : "")),
        element("td", {}, points ? curve(points) : "")));
    }
  }
  $("#stats").replaceChildren(element("p", {}, `${stats.corrections} correction(s) of ${stats.reviewed} of ` +
    `${stats.tracks} tracks`), table);
  const wanted = new URLSearchParams(location.search);
  for (const [key, value] of wanted) {
    const field = $(`#filters [name=${key}]`);
    if (field) field.value = value;
  }
  page = Number(wanted.get("page") || 1);
}

async function verifySample() {
  const form = new FormData($("#verify"));
  const query = new URLSearchParams({tag: form.get("tag"), n: form.get("n")});
  let data;
  try { data = await api(`/api/verify?${query}`); } catch (error) { return say(error.message); }
  const [low, high] = data.interval;
  $("#verify-result").textContent = `${data.tag}: given to ${data.given} track(s); ${data.judged} of the ` +
    `${data.tracks.length} drawn judged, ${data.right} right` + (data.precision === null ? "" :
    `: precision ${fmt(data.precision)} (95 % interval ${fmt(low)} to ${fmt(high)})`) +
    ". Open each track, then confirm or remove the tag.";
  const verdict = {true: "right", false: "wrong", null: "not judged yet"};
  $("#verify-tracks").replaceChildren(...data.tracks.map((track) => element("li", {},
    element("a", {href: `/track?id=${encodeURIComponent(track.id)}`}, track.id),
    ` p = ${fmt(track.probability)}: ${verdict[track.right]}`)));
}

async function searchTracks() {
  const form = new FormData($("#search"));
  const query = new URLSearchParams({q: form.get("q"), n: form.get("n")});
  let data;
  try { data = await api(`/api/search?${query}`); } catch (error) {
    $("#search-read").textContent = "";
    $("#search-hits").replaceChildren();
    return say(error.message);
  }
  say("");
  $("#search-read").textContent = `Read as: ${data.read_as}`;
  $("#search-hits").replaceChildren(...data.hits.map((hit) => element("li", {class: "hit"},
    element("a", {href: `/track?id=${encodeURIComponent(hit.id)}`}, hit.id),
    ` ${fmt(hit.score)}: `, element("span", {class: "why"}, hit.why))));
}

async function listPage() {
  $("#search").addEventListener("submit", (event) => { event.preventDefault(); searchTracks(); });
  $("#verify").addEventListener("submit", (event) => { event.preventDefault(); verifySample(); });
  $("#filters").addEventListener("submit", (event) => { event.preventDefault(); page = 1; loadList(); });
  $("#prev-page").addEventListener("click", () => { page -= 1; loadList(); });
  $("#next-page").addEventListener("click", () => { page += 1; loadList(); });
  $("#next").addEventListener("click", () => goNext());
  document.addEventListener("keydown", (event) => {
    if (event.key === "n" && !["INPUT", "SELECT"].includes(document.activeElement.tagName)) goNext();
  });
  try { await loadStats(); } catch (error) { say(error.message); }
  await loadList();
}

// ------------------------------------------------------------------------------------------- track

const trackId = new URLSearchParams(location.search).get("id");
let focused = 0;

async function correct(group, tag, action, value) {
  try {
    await api("/api/corrections", {track_id: trackId, group, tag, action, who: who(), value});
    say(`${action} ${group}/${tag}${value !== undefined ? ` = ${value}` : ""}: saved`, true);
    await loadTrack();
  } catch (error) { say(error.message); }
}

async function undo() {
  try {
    const row = await api("/api/undo", {who: who(), track_id: trackId});
    say(`undone: ${row.group}/${row.tag}`, true);
    await loadTrack();
  } catch (error) { say(error.message); }
}

function stateText(label) {
  const c = label.correction;
  if (!c) return "";
  return `${c.action}${c.value !== null ? ` ${c.value}` : ""} by ${c.who}`;
}

function tagRow(group, label) {
  const controls = [];
  const button = (text, action, key) =>
    element("button", {"data-action": action, title: `(${key})`, onclick: () => correct(group.name, label.label, action)}, text);
  let cells;
  if (group.type === "multilabel") {
    const bar = element("span", {class: "bar"}, element("span", {style: `width:${(label.probability || 0) * 100}%`}),
      element("i", {style: `left:${label.threshold * 100}%`}));
    controls.push(button("confirm", "confirm", "c"));
    controls.push(label.decided ? button("remove", "remove", "x") : button("add", "add", "a"));
    controls.push(element("button", {"data-action": "loop", title: "loop the chunk behind this tag (l)",
      class: loop && loop.group === group.name && loop.tag === label.label ? "looping" : "",
      onclick: (event) => toggleLoop(group.name, label.label, event.target)}, "loop"));
    cells = [element("td", {class: label.decided ? "decided" : ""}, label.label), element("td", {}, bar),
      element("td", {}, `${fmt(label.probability)} / ${fmt(label.threshold)}`),
      element("td", {}, label.decided ? "decided" : "")];
  } else {
    const input = element("input", {type: "number", step: "any", min: label.range[0], max: label.range[1],
      value: fmt(label.value, 1), size: 6, "aria-label": `${group.name}/${label.label}`});
    controls.push(button("confirm", "confirm", "c"));
    controls.push(element("button", {"data-action": "set", onclick: () => correct(group.name, label.label, "set", input.value)}, "set"));
    cells = [element("td", {}, label.label), element("td", {}, input),
      element("td", {}, `${fmt(label.value, 1)} in [${label.range[0]}, ${label.range[1]}]`), element("td", {}, "")];
  }
  const state = label.correction ? label.correction.action : "";
  return element("tr", {"data-group": group.name, "data-tag": label.label, "data-decided": String(!!label.decided),
    "data-state": state},
    ...cells, element("td", {class: `state ${state}`}, stateText(label)), element("td", {}, ...controls));
}

// The chunk of the tagger's grid with the highest probability of a tag, played over and over.
let loop = null;
let chunks = null;

async function toggleLoop(group, tag, target) {
  const player = $("#player");
  document.querySelectorAll("button.looping").forEach((b) => b.classList.remove("looping"));
  if (loop && loop.group === group && loop.tag === tag) {
    loop = null;
    $("#segment").hidden = true;
    return;
  }
  try {
    chunks = chunks || await api(`/api/chunks?id=${encodeURIComponent(trackId)}`);
  } catch (error) { return say(error.message); }
  const probabilities = (chunks.groups[group] || {})[tag];
  if (!probabilities) return say(`the audio tagger does not predict ${group}/${tag}: no chunk to loop`);
  const best = probabilities.indexOf(Math.max(...probabilities));
  const start = chunks.starts[best];
  loop = {group, tag, start, end: Math.min(start + chunks.seconds, player.duration || Infinity)};
  target.classList.add("looping");
  say(`looping ${group}/${tag}: chunk ${best + 1} of ${probabilities.length}, ${fmt(start, 1)} s to ` +
      `${fmt(loop.end, 1)} s, p = ${fmt(probabilities[best])}`, true);
  const duration = player.duration || 1;
  Object.assign($("#segment").style, {left: `${(start / duration) * 100}%`,
    width: `${((loop.end - start) / duration) * 100}%`});
  $("#segment").hidden = false;
  player.currentTime = start;
  play(player);
}

// A pause (or a new seek) that interrupts a pending play() rejects its promise with an AbortError: that is a
// listener's ordinary click, not a fault; anything else still surfaces.
function play(player) {
  player.play().catch((error) => { if (error.name !== "AbortError") throw error; });
}

function followPlayer() {
  const player = $("#player");
  const move = () => {
    if (loop && player.currentTime >= loop.end) player.currentTime = loop.start;
    if (player.duration) $("#playhead").style.left = `${(player.currentTime / player.duration) * 100}%`;
    if (!player.paused) requestAnimationFrame(move);
  };
  player.addEventListener("play", () => requestAnimationFrame(move));
  player.addEventListener("timeupdate", move);
  $("#view").addEventListener("click", (event) => {
    const box = $("#picture").getBoundingClientRect();
    if (!player.duration || box.width === 0) return;
    player.currentTime = ((event.clientX - box.left) / box.width) * player.duration;
    play(player);
  });
}

async function loadTrack() {
  const data = await api(`/api/track?id=${encodeURIComponent(trackId)}`);
  $("#track").hidden = false;
  document.title = `coldtag review: ${data.id}`;
  $("#title").textContent = data.id;
  const facts = [data.path, data.duration ? `${fmt(data.duration, 1)} s` : "", ...data.warnings];
  if (data.error) facts.push(`error ${data.error.type}: ${data.error.message}`);
  if (!data.audio) facts.push("audio file not found");
  $("#facts").textContent = facts.filter(Boolean).join(" · ");
  $("#reason").textContent = data.reason ? `Queue: ${data.reason}` : "";
  const player = $("#player");
  if (!player.getAttribute("src") && data.audio) {
    player.src = `/audio?id=${encodeURIComponent(data.id)}`;
    $("#picture").src = `/picture?id=${encodeURIComponent(data.id)}`;
    $("#picture").hidden = false;
  }
  if (data.cover && $("#cover").hidden) { $("#cover").src = `/cover?id=${encodeURIComponent(data.id)}`; $("#cover").hidden = false; }
  if (data.lyrics) { $("#lyrics").textContent = data.lyrics; $("#lyrics").hidden = false; }
  const groups = data.groups.map((group) => element("section", {class: "group"}, element("h3", {}, group.name),
    element("table", {}, ...group.labels.map((label) => tagRow(group, label)))));
  $("#groups").replaceChildren(...groups);
  $("#history").replaceChildren(...data.history.map((row) => element("li", {},
    `${row.at} ${row.who}: ${row.action} ${row.group}/${row.tag}${row.value !== null ? ` = ${row.value}` : ""}` +
    (row.undoes ? ` (retracts #${row.undoes})` : ""))));
  focus(focused);
}

function focus(index) {
  const rows = [...document.querySelectorAll("#groups tr")];
  if (rows.length === 0) return;
  focused = Math.max(0, Math.min(rows.length - 1, index));
  rows.forEach((row, i) => row.classList.toggle("focus", i === focused));
}

function press(action) {
  const row = document.querySelectorAll("#groups tr")[focused];
  const target = row && row.querySelector(`button[data-action=${action}]`);
  if (target) target.click();
}

async function trackPage() {
  $("#next").addEventListener("click", () => goNext(trackId));
  $("#undo").addEventListener("click", undo);
  followPlayer();
  document.addEventListener("keydown", (event) => {
    if (["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName) || event.ctrlKey || event.metaKey) return;
    const keys = {j: () => focus(focused + 1), k: () => focus(focused - 1), c: () => press("confirm"),
      x: () => press("remove"), a: () => press("add"), l: () => press("loop"), u: undo, n: () => goNext(trackId),
      " ": () => ($("#player").paused ? play($("#player")) : $("#player").pause())};
    if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
  });
  if ($("#message").textContent) return;  // the server said what is wrong (an unknown id)
  try { await loadTrack(); } catch (error) { say(error.message); }
}

identify().then(() => (document.body.dataset.page === "list" ? listPage() : trackPage()));
