// The search page: plain DOM code, no build step. Talks to the JSON API of `archive serve`.
"use strict";

const $ = (sel) => document.querySelector(sel);
const videos = new Map(); // "store:video_id" -> /api/videos row (name, labels, playable, ...)
const key = (si, id) => `${si || 0}:${id}`; // several stores (archive serve --store A --store B) reuse ids
const sq = (si) => (si ? `?store=${si}` : ""); // which store an id belongs to (0: the first, or the only one)

function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") n.className = v;
    else if (k === "style") n.style.cssText = v;
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) n.append(c);
  return n;
}

function fmt(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m}:${(s - 60 * m).toFixed(1).padStart(4, "0")}`;
}

function basename(p) { return p.split(/[\\/]/).pop(); }

async function api(url, opts) {
  const r = await fetch(url, opts);
  let body = null;
  try { body = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) throw new Error((body && body.detail) || `${r.status} ${r.statusText}`);
  return body;
}

function status(...parts) { $("#status").replaceChildren(...parts); }
function fail(e) { status(el("span", { class: "error" }, `Error: ${e.message}`)); }

async function loadStats() {
  try {
    const s = await api("/api/stats");
    const hours = s.seconds >= 3600 ? `${(s.seconds / 3600).toFixed(1)} h` : fmt(s.seconds);
    $("#stats").textContent = `${s.videos} videos · ${s.frames.toLocaleString()} frames · ${hours} of video · ` +
      `${s.model} (${s.pretrained})` + (s.failures ? ` · ${s.failures} file(s) could not be indexed` : "") +
      (s.ocr ? ` · ${s.text_lines.toLocaleString()} lines of text read on screen` : "") +
      (s.speech ? ` · ${s.speech_words.toLocaleString()} words heard in ${s.speech_videos} video${s.speech_videos === 1 ? "" : "s"}` : "");
    $("#ocr-label").hidden = !s.ocr;
    $("#said-label").hidden = !s.speech;
    $("#sound-label").hidden = !s.sound_videos;
    $("#find-sound").hidden = !s.sound_videos;
    const list = $("#label-list");
    list.replaceChildren(...s.labels.map((l) => {
      const c = l.calibration;
      const how = c ? ` · calibrated: precision ${c.precision.toFixed(2)}, recall ${c.recall.toFixed(2)} on ` +
        `${c.judged_videos} judged videos` : "";
      return el("li", { title: `prompts: ${l.prompts.join("; ")}` + (c ? `; threshold ${l.threshold.toFixed(4)}` +
        ` calibrated ${c.calibrated_at} on ${c.truth}` : "") },
        `${l.name}: in ${l.videos_present} video${l.videos_present === 1 ? "" : "s"}, ${fmt(l.seconds)}${how}`);
    }));
    $("#labels").hidden = s.labels.length === 0;
  } catch (e) { fail(e); }
}

async function loadVideos() {
  const body = await api("/api/videos");
  for (const v of body.videos) videos.set(key(v.store_index, v.video_id), v);
  return body.videos;
}

function labelChips(si, videoId) {
  const v = videos.get(key(si, videoId));
  const present = v ? v.labels.filter((l) => l.present) : [];
  if (!present.length) return null;
  return el("p", { class: "vlabels" }, "Labels: ",
    present.map((l) => el("span", l.rule === "calibrated" ? { title: "threshold calibrated on labelled truth" } : {},
      `${l.label}${l.rule === "calibrated" ? " ✓" : ""} ${fmt(l.duration_s)}`)));
}

function thumbButton(si, videoId, name, frameId, at) {
  if (frameId === null || frameId === undefined) {
    return el("div", { class: "thumb none" }, "no thumbnail");
  }
  return el("button", {
    class: "thumb", type: "button", "aria-label": `Play ${name} from ${fmt(at || 0)}`,
    onclick: () => play(si, videoId, at || 0),
  },
  el("img", { src: `/api/thumbnails/${frameId}${sq(si)}`, alt: `${name} at ${fmt(at || 0)}`, loading: "lazy" }),
  el("span", { class: "at" }, fmt(at || 0)));
}

function timeline(r) {
  const total = Math.max(r.video_duration_s || 0, ...r.segments.map((s) => s.end_s), 0.001);
  const name = basename(r.video);
  const bar = el("div", { class: "timeline", role: "group", "aria-label": `Where it appears in ${name}` });
  r.segments.forEach((s, i) => {
    const left = (100 * s.start_s) / total;
    const width = (100 * (s.end_s - s.start_s)) / total;
    const label = `${fmt(s.start_s)} – ${fmt(s.end_s)}`;
    bar.append(el("button", {
      class: "seg", type: "button", style: `left:${left}%;width:${width}%`,
      "aria-label": `Play from ${fmt(s.start_s)} (segment ${i + 1}: ${label})`,
      "data-start": s.start_s, onclick: () => play(r.store_index, r.video_id, s.start_s),
    }, el("span", { class: "tip" }, label)));
  });
  return [bar, el("div", { class: "axis muted", "aria-hidden": "true" }, el("span", {}, "0"), el("span", {}, fmt(total)))];
}

function textRead(r, kind) {
  // the words read on screen (or heard) in the matching segments (a written or spoken query: what matched)
  const items = [];
  for (const s of r.segments) {
    const texts = s.text ? [s.text] : (s.text_read || []);
    if (texts.length) {
      items.push(el("button", { type: "button", class: "textline", onclick: () => play(r.store_index, r.video_id, s.start_s),
        "aria-label": `Play from ${fmt(s.start_s)}` }, `${fmt(s.start_s)}: `, texts.map((t) => `“${t}”`).join(", ")));
    }
  }
  return items.length ? el("p", { class: "texts" }, readLabel(items.length, kind), ...items) : null;
}

function readLabel(n, kind) {
  return `${kind === "said" ? "Heard" : "Read on screen"} (${n} segment${n === 1 ? "" : "s"}): `;
}

function detailsLink(si, id, name, text) {
  return el("a", { href: `/?video=${id}${si ? `&store=${si}` : ""}`, class: "details",
    onclick: (e) => { e.preventDefault(); showVideo(si, id, true); } }, text || `details of ${name}`);
}

function resultCard(r, kind) {
  const name = basename(r.video);
  const facts = r.present
    ? [el("span", { class: "badge present" }, "present"),
       `first ${{ said: "said", sound: "heard" }[kind] || "seen"} ${fmt(r.first_seen_s)} · ` +
       `${{ said: "said for", sound: "heard for" }[kind] || "on screen"} ` +
       `${fmt(r.duration_s)} of ${fmt(r.video_duration_s)} · ` +
       `${r.segments.length} segment${r.segments.length === 1 ? "" : "s"}`]
    : r.transcribed === false
      ? [el("span", { class: "badge absent" }, "not transcribed"), "its sound was not transcribed: index with --speech"]
      : [el("span", { class: "badge absent" }, "not found"),
         `best moment ${fmt(r.best_s)} of ${fmt(r.video_duration_s)}`];
  return el("li", { class: "result" },
    thumbButton(r.store_index, r.video_id, name, r.best_frame_id, r.best_s),
    el("div", { class: "body" },
      el("h3", {}, name),
      el("p", { class: "path muted" }, r.store ? `${r.video} (store ${r.store})` : r.video),
      el("p", { class: "facts" }, facts, el("span", { class: "muted" }, ` · score ${r.score.toFixed(3)}`)),
      timeline(r),
      textRead(r, kind),
      labelChips(r.store_index, r.video_id),
      detailsLink(r.store_index, r.video_id, name)));
}

function videoCard(v) {
  return el("li", { class: "result" },
    thumbButton(v.store_index, v.video_id, v.name, v.thumbnail_frame_id, 0),
    el("div", { class: "body" },
      el("h3", {}, v.name),
      el("p", { class: "path muted" }, v.store ? `${v.path} (store ${v.store})` : v.path),
      el("p", { class: "facts" }, `${fmt(v.duration_s)} · ${v.width}×${v.height} · ${v.codec} · ${v.shots} shots` +
        (v.note ? ` · ${v.note}` : "")),
      labelChips(v.store_index, v.video_id),
      detailsLink(v.store_index, v.video_id, v.name)));
}

function versionsCard(si, v) {
  // the videos that share footage with this one: the shared stretches on both timelines
  const items = (v.versions || []).map((o) => {
    const here = { video: v.path, video_id: v.video_id, store_index: si, video_duration_s: v.duration_s,
      segments: o.segments.map((s) => ({ start_s: s.start_s, end_s: s.end_s })) };
    const there = { video: o.path, video_id: o.video_id, store_index: si, video_duration_s: o.duration_s,
      segments: o.segments.map((s) => ({ start_s: s.other_start_s, end_s: s.other_end_s })) };
    const pairs = o.segments.map((s) => `${fmt(s.start_s)} – ${fmt(s.end_s)} = ${fmt(s.other_start_s)} – ${fmt(s.other_end_s)}`);
    return el("li", { class: "version" },
      el("p", {}, detailsLink(si, o.video_id, o.name, o.name), o.is_longest ? el("span", { class: "badge present" }, "longest") : "",
        el("span", { class: "muted" }, ` · ${fmt(o.duration_s)} · shares ${fmt(o.shared_s)}: ${pairs.join("; ")}`)),
      el("p", { class: "muted tl" }, `in ${v.name}`), timeline(here),
      el("p", { class: "muted tl" }, `in ${o.name}`), timeline(there));
  });
  return el("li", { class: "result versions" }, el("div", { class: "body" },
    el("h3", {}, items.length ? `Versions: shares footage with ${items.length} video${items.length === 1 ? "" : "s"}` : "Versions"),
    items.length ? el("ul", { class: "version-list" }, items)
      : el("p", { class: "muted" }, "No other indexed video shares footage with it.")));
}

async function showVideo(si, id, push = false) {
  if (push) history.pushState({ video: id }, "", `/?video=${id}${si ? `&store=${si}` : ""}`);
  status("Loading…");
  try {
    if (!videos.size) await loadVideos();
    const [v, said] = await Promise.all([api(`/api/videos/${id}${sq(si)}`), api(`/api/videos/${id}/transcript${sq(si)}`)]);
    v.store_index = si || 0;
    const row = videos.get(key(si, id));
    document.title = `${v.name} – Video archive`;
    status(`${v.name}: ${fmt(v.duration_s)}, ${v.shots.length} shots` +
      (v.ocr_lines === null ? " · on-screen text not read" : ` · ${v.text_lines.length} line(s) of text read on screen`) +
      (said.transcribed ? ` · ${said.lines.length} spoken line(s)` : " · speech not transcribed"));
    const lines = v.text_lines.map((t) => el("li", {},
      el("button", { type: "button", class: "textline", onclick: () => play(si, id, t.start_s),
        "aria-label": `Play from ${fmt(t.start_s)}` }, `${fmt(t.start_s)} – ${fmt(t.end_s)}`),
      ` “${t.text}” `, el("span", { class: "muted" }, `(confidence ${t.confidence.toFixed(2)})`)));
    $("#results").replaceChildren(videoCard(row || { ...v, shots: v.shots.length, thumbnail_frame_id: null }),
      versionsCard(si, v),
      el("li", { class: "result textlines" }, el("div", { class: "body" },
        el("h3", {}, "Text on screen"),
        lines.length ? el("ol", { class: "lines" }, lines)
          : el("p", { class: "muted" }, v.ocr_lines === null ? "Not read: index with --ocr." : "None read."))),
      transcriptCard(si, id, said));
  } catch (e) { fail(e); }
}

function transcriptCard(si, id, t) {
  // what is said, line by line: a click on a line plays the video from its first word
  const lines = t.lines.map((ln) => el("li", {},
    el("button", { type: "button", class: "textline", onclick: () => play(si, id, ln.start_s),
      "aria-label": `Play from ${fmt(ln.start_s)}` }, `${fmt(ln.start_s)} – ${fmt(ln.end_s)}`),
    ` “${ln.text}”`));
  const lang = t.speech_language ? ` (${t.speech_language})` : "";
  return el("li", { class: "result transcript" }, el("div", { class: "body" },
    el("h3", {}, `What is said${lang}`),
    lines.length ? el("ol", { class: "lines" }, lines)
      : el("p", { class: "muted" }, !t.transcribed ? "Not transcribed: index with --speech."
        : t.sound_s === 0 ? "No sound track." : "Nothing said.")));
}

function showResults(res) {
  const shown = res.results.filter((r) => r.present).length;
  const what = res.kind === "image" ? "the example image"
    : res.kind === "sound" ? `the sound ${res.query.replace(/^sound:/, "")}`
    : res.kind === "ocr" ? `the words “${res.query}” on screen`
    : res.kind === "said" ? `the words “${res.query}” said` : `“${res.query}”`;
  const unit = { ocr: "text lines", said: "words heard", sound: "landmarks" }[res.kind] || "frames";
  const parts = [`${shown} of ${res.results.length} videos shown contain ${what}` +
    ` (${res.videos_searched} videos, ${res.frames_searched.toLocaleString()} ${unit}` +
    ` searched in ${res.took_ms} ms)`];
  for (const w of res.warnings || []) parts.push(el("div", { class: "muted" }, `Note: ${w}`));
  status(...parts);
  $("#results").replaceChildren(...res.results.map((r) => resultCard(r, res.kind)));
}

async function browse() {
  status("Loading…");
  try {
    const list = await loadVideos();
    status(list.length ? `${list.length} videos. Type a search above, or search by an example image.`
      : "The archive is empty: run `archive index FOLDER` first.");
    $("#results").replaceChildren(...list.map(videoCard));
  } catch (e) { fail(e); }
}

function mode() { return $("#ocr-mode").checked ? "ocr" : $("#said-mode").checked ? "said" : "q"; }

async function search(q, push = true, param = mode()) {
  // param: q (a text), ocr (words written on screen) or said (words spoken)
  q = q.trim();
  if (!q) return browse();
  $("#q").value = q;
  $("#ocr-mode").checked = param === "ocr";
  $("#said-mode").checked = param === "said";
  if (push) history.pushState({ q, param }, "", `/?${param}=${encodeURIComponent(q)}`);
  document.title = `${q} – Video archive`;
  status(param === "ocr" ? `Searching for the words “${q}” on screen…`
    : param === "said" ? `Listening for the words “${q}”…` : `Searching for “${q}”…`);
  try {
    if (!videos.size) await loadVideos();
    showResults(await api(`/api/search?${param}=${encodeURIComponent(q)}`));
  } catch (e) { fail(e); }
}

function route(push = false) {
  const p = new URLSearchParams(location.search);
  if (p.get("video") !== null) return showVideo(Number(p.get("store") || 0), Number(p.get("video")), push);
  if (p.get("ocr")) return search(p.get("ocr"), push, "ocr");
  if (p.get("said")) return search(p.get("said"), push, "said");
  return search(p.get("q") || "", push, "q");
}

async function searchImage(file) {
  if (!file) return;
  const url = URL.createObjectURL(file);
  $("#q").value = "";
  document.title = `${file.name} – Video archive`;
  status(el("img", { src: url, alt: "" }), `Searching for ${file.name}…`);
  try {
    if (!videos.size) await loadVideos();
    const res = await api(`/api/search/image?name=${encodeURIComponent(file.name)}`, {
      method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    history.pushState({ image: file.name }, "", "/");
    showResults(res);
    $("#status").prepend(el("img", { src: url, alt: `example: ${file.name}` }));
  } catch (e) { fail(e); }
}

async function searchSound(file) {
  if (!file) return;
  $("#q").value = "";
  document.title = `${file.name} – Video archive`;
  status(`Listening for ${file.name}…`);
  try {
    if (!videos.size) await loadVideos();
    const res = await api(`/api/search/sound?name=${encodeURIComponent(file.name)}`, {
      method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    history.pushState({ sound: file.name }, "", "/");
    showResults(res);
  } catch (e) { fail(e); }
}

async function searchSoundFrom(videoId, at) {
  // "find this sound": the next 3 s of the video in the player, from its fingerprints
  const span = `${at.toFixed(2)}-${(at + 3).toFixed(2)}`;
  closePlayer();
  status(`Listening for ${span} s of this video elsewhere…`);
  try {
    if (!videos.size) await loadVideos();
    showResults(await api(`/api/search/sound?video_id=${videoId}&at=${span}`));
  } catch (e) { fail(e); }
}

function play(si, videoId, at) {
  const v = videos.get(key(si, videoId));
  const media = `/api/media/${videoId}${sq(si)}`;
  const dlg = $("#player");
  const video = $("#video");
  const note = $("#player-note");
  $("#player-title").textContent = `${v ? v.name : "video " + videoId} from ${fmt(at)}`;
  note.replaceChildren();
  if (v && !v.playable) {
    note.append(`Browsers may not play this file (${v.codec}, ${v.path.split(".").pop()}). `,
      el("a", { href: media, download: v.name }, "Download it"), " to open it in a player.");
  }
  video.onerror = () => {
    note.replaceChildren(`This browser cannot play ${v ? v.name : "this file"}. `,
      el("a", { href: media, download: v ? v.name : true }, "Download it"),
      ` and open it at ${fmt(at)}.`);
  };
  const seek = () => { video.currentTime = at; video.play().catch(() => {}); };
  const src = media;
  if (video.getAttribute("src") === src && video.readyState >= 1) seek();
  else { video.onloadedmetadata = seek; video.src = src; }
  $("#find-sound").onclick = () => searchSoundFrom(videoId, video.currentTime || at);
  if (!dlg.open) dlg.showModal();
  video.focus();
}

function closePlayer() {
  const video = $("#video");
  video.pause();
  $("#player").close();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#search").addEventListener("submit", (e) => { e.preventDefault(); search($("#q").value); });
  $("#image").addEventListener("change", (e) => { searchImage(e.target.files[0]); e.target.value = ""; });
  $("#image-label").addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("#image").click(); }
  });
  $("#sound").addEventListener("change", (e) => { searchSound(e.target.files[0]); e.target.value = ""; });
  $("#sound-label").addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("#sound").click(); }
  });
  // written on screen / said: one or the other (or neither: a text query)
  $("#ocr-mode").addEventListener("change", () => { if ($("#ocr-mode").checked) $("#said-mode").checked = false; });
  $("#said-mode").addEventListener("change", () => { if ($("#said-mode").checked) $("#ocr-mode").checked = false; });
  $("#player-close").addEventListener("click", closePlayer);
  $("#player").addEventListener("close", () => $("#video").pause());
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && document.activeElement.tagName !== "INPUT") { e.preventDefault(); $("#q").focus(); }
  });
  window.addEventListener("popstate", () => route(false));
  loadStats();
  route(false);
});
