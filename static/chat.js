// The chat panel: POST the message, read the NDJSON answer as it streams, and show
// text pieces, tool calls (with arguments) and tool results as they happen.
(function () {
  "use strict";
  const panel = document.getElementById("chat-panel");
  const agent = panel.dataset.agent;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const log = document.getElementById("chat-log");
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-input");
  const status = document.getElementById("chat-status");
  let conversation = null;
  let busy = false;
  let ended = false;

  function add(cls, text) {
    const div = document.createElement("div");
    div.className = "msg " + cls;
    const span = document.createElement("span");
    span.textContent = text;
    div.appendChild(span);
    log.appendChild(div);
    div.scrollIntoView({block: "end"});
    return span;
  }

  async function send(message) {
    busy = true;
    add("you", message);
    status.textContent = "The agent is answering…";
    let answer = null;
    try {
      const r = await fetch(`/agents/${encodeURIComponent(agent)}/chat/messages`, {
        method: "POST",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
        body: JSON.stringify({message, conversation_id: conversation}),
      });
      if (!r.ok) {
        let detail = r.statusText;
        try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
        throw new Error(detail);
      }
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffered = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, {stream: true});
        let nl;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (!line.trim()) continue;
          const ev = JSON.parse(line);
          if (ev.type === "conversation") {
            if (ev.id !== conversation) {
              const hint = document.getElementById("chat-hint");
              if (hint) hint.remove();
              if (conversation) add("tool", "A new conversation started (the previous one had ended).");
              conversation = ev.id;
              if (ev.greeting) log.insertBefore(makeGreeting(ev.greeting), log.lastChild);
            }
          } else if (ev.type === "delta") {
            if (!answer) answer = add("agent", "");
            answer.textContent += ev.text;
          } else if (ev.type === "tool_call") {
            add("tool", `→ ${ev.name}(${ev.arguments || "{}"})`);
            answer = null;
          } else if (ev.type === "tool_result") {
            // A built-in (end_call, transfer_call, send_dtmf) answers the model with an
            // instruction meant for it alone; show what it does instead.
            if (ev.note) add("tool", `← ${ev.name}: ${ev.note}`);
            else add("tool", `← ${ev.name}: ${ev.output}` + (ev.ok ? "" : "  (failed)"));
          } else if (ev.type === "done") {
            status.textContent = "";
            if (ev.ended) endConversation();
          } else if (ev.type === "error") {
            add("tool err", "Error: " + ev.message);
            status.textContent = "";
          }
        }
      }
    } catch (e) {
      add("tool err", "Could not chat: " + e.message);
      status.textContent = "";
    } finally {
      busy = false;
      if (!ended) input.focus();
    }
  }

  // The agent hung up (end_call): like a phone call, the conversation is over.
  function endConversation() {
    add("tool ended", "The agent ended the conversation. Start a new one to talk again.");
    input.disabled = true;
    document.getElementById("chat-send").disabled = true;
    ended = true;
  }

  function makeGreeting(text) {
    const div = document.createElement("div");
    div.className = "msg agent";
    const span = document.createElement("span");
    span.textContent = text;
    div.appendChild(span);
    return div;
  }

  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const message = input.value.trim();
    if (!message || busy) return;
    input.value = "";
    send(message);
  });
  document.getElementById("chat-new").addEventListener("click", () => {
    conversation = null;
    ended = false;
    input.disabled = false;
    document.getElementById("chat-send").disabled = false;
    log.innerHTML = "";
    status.textContent = "New conversation: the agent has forgotten the previous one.";
  });
})();
