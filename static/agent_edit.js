// Agent edit page: tabs without reloads, voices that follow the chosen model and TTS
// service, the cascade box shown only when voice streaming is off, and JSON fields
// checked as you type. Without JavaScript the page still works (tabs are links).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("catalog-data").textContent);
  const tabInput = document.getElementById("current-tab");
  const actions = document.getElementById("form-actions");

  function showTab(name) {
    document.querySelectorAll(".tab-panel").forEach(p => { p.hidden = p.dataset.panel !== name; });
    document.querySelectorAll(".tabs a").forEach(a => a.classList.toggle("active", a.dataset.tab === name));
    if (tabInput) tabInput.value = name;
    if (actions) actions.hidden = name === "yaml";
    history.replaceState(null, "", "?tab=" + name);
  }
  // Tabs with a panel on this page switch in place; others (Tests) are pages of their own.
  document.querySelectorAll(".tabs a[data-tab]").forEach(a => a.addEventListener("click", ev => {
    ev.preventDefault(); showTab(a.dataset.tab);
  }));
  document.querySelectorAll("[data-tab-link]").forEach(a => a.addEventListener("click", ev => {
    ev.preventDefault(); showTab(a.dataset.tabLink);
  }));

  function fillSelect(select, options, current, defaultLabel) {
    if (!select) return;
    select.innerHTML = "";
    const first = document.createElement("option");
    first.value = ""; first.textContent = defaultLabel;
    select.appendChild(first);
    for (const v of options) {
      const o = document.createElement("option");
      o.value = v; o.textContent = v; o.selected = v === current;
      select.appendChild(o);
    }
  }
  const model = document.getElementById("f-model");
  const voice = document.getElementById("f-voice");
  if (model && voice) model.addEventListener("change", () => {
    const voices = data.voices[model.value] || [];
    const keep = voices.includes(voice.value) ? voice.value : "";
    fillSelect(voice, voices, keep, "default (" + (data.default_voices[model.value] || "provider default") + ")");
  });
  const tts = document.getElementById("f-tts");
  const ttsVoice = document.getElementById("f-tts-voice");
  if (tts && ttsVoice && tts.tagName === "SELECT") tts.addEventListener("change", () => {
    const svc = data.tts[tts.value] || {voices: []};
    fillSelect(ttsVoice, svc.voices, "", "default (" + (svc.default || "service default") + ")");
  });
  const streaming = document.getElementById("f-streaming");
  const cascade = document.getElementById("cascade-box");
  // With voice streaming on the cascade box is not used: say so (fading it would make
  // its text too faint to read).
  function syncStreaming() { if (streaming && cascade) cascade.classList.toggle("unused", streaming.checked); }
  if (streaming) { streaming.addEventListener("change", syncStreaming); syncStreaming(); }

  document.querySelectorAll("textarea.json").forEach(area => {
    let note = area.parentElement.querySelector(".json-status");
    if (!note) { note = document.createElement("div"); note.className = "hint json-status"; area.after(note); }
    const check = () => {
      if (!area.value.trim()) { note.textContent = ""; return; }
      try {
        const v = JSON.parse(area.value);
        const isObject = v !== null && typeof v === "object" && !Array.isArray(v);
        note.textContent = isObject ? "valid JSON" : "must be a JSON object { … }";
        note.className = "hint json-status " + (isObject ? "ok" : "err");
      } catch (e) {
        note.textContent = "not valid JSON: " + e.message;
        note.className = "hint json-status err";
      }
    };
    area.addEventListener("input", check);
    check();
  });
})();
