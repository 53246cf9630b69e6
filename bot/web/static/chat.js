// Web chat client. Everything the assistant or the person writes is shown
// with textContent, never as markup. Controls come from custom.input.
"use strict";
(function () {
  const transcript = document.getElementById("transcript");
  const form = document.getElementById("composer");
  const choices = document.getElementById("choices");
  const label = document.getElementById("answer-label");
  const status = document.getElementById("status");
  let answer = document.getElementById("answer");
  let lastQuestion = null;
  let lastQuestionText = [];

  const INPUTS = {
    text: { tag: "input", type: "text", autocomplete: "off" },
    long_text: { tag: "textarea" },
    date: { tag: "input", type: "text", autocomplete: "bday", inputmode: "text" },
    phone: { tag: "input", type: "tel", autocomplete: "tel" },
    email: { tag: "input", type: "email", autocomplete: "email" },
    postal_code: { tag: "input", type: "text", autocomplete: "postal-code" },
    choice: { tag: "input", type: "text", autocomplete: "off" },
    yes_no: { tag: "input", type: "text", autocomplete: "off" },
  };
  const FIELD_AUTOCOMPLETE = { full_name: "name", preferred_name: "nickname" };

  function add(text, who) {
    const p = document.createElement("p");
    p.className = "msg " + who;
    p.textContent = text;
    transcript.appendChild(p);
    p.scrollIntoView({ block: "nearest" });
  }

  function render(question) {
    lastQuestion = question;
    const spec = INPUTS[question.input] || INPUTS.text;
    const kept = answer.value;
    const el = document.createElement(spec.tag);
    el.id = "answer"; el.name = question.field || "answer"; el.maxLength = 2000;
    el.dataset.field = question.field || "";
    if (spec.type) el.type = spec.type;
    if (spec.tag === "textarea") el.rows = 3;
    el.setAttribute("autocomplete", FIELD_AUTOCOMPLETE[question.field] || spec.autocomplete || "off");
    if (spec.inputmode) el.inputMode = spec.inputmode;
    el.value = kept;  // never lose what was typed
    answer.replaceWith(el); answer = el;
    choices.textContent = "";
    const options = question.input === "yes_no" ? ["Yes", "No"] : (question.choices || []);
    options.forEach(function (option) {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = option;
      b.addEventListener("click", function () { send(option); });
      choices.appendChild(b);
    });
    if (question.optional) {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = "Skip";
      b.addEventListener("click", function () { send("skip"); });
      choices.appendChild(b);
    }
  }

  // Quick replies that leave the answer box as it is (stop, delete).
  function options(list) {
    choices.textContent = "";
    list.forEach(function (option) {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = option;
      b.addEventListener("click", function () { send(option); });
      choices.appendChild(b);
    });
  }

  // Crisis resources as real links: tel: to call, sms: to text, the chat page.
  function resources(crisis, label, into) {
    const list = document.createElement("ul");
    list.className = "resources";
    list.setAttribute("aria-label", label || "Ways to get help now");
    (crisis.resources || []).forEach(function (r) {
      [["call", "tel:", "Call "], ["text", "sms:", "Text "]].forEach(function (kind) {
        const number = r[kind[0]];
        if (!number) return;
        const item = document.createElement("li");
        const link = document.createElement("a");
        link.className = "resource";
        link.href = kind[1] + String(number).replace(/[^0-9+]/g, "");
        link.textContent = kind[2] + r.name + " (" + number + ")";
        item.appendChild(link);
        list.appendChild(item);
      });
    });
    if (list.children.length) (into || transcript).appendChild(list);
    return list;
  }

  function show(messages) {
    let texts = [];
    let crisisShown = false;
    messages.forEach(function (m) {
      if (m.text) { add(m.text, "bot"); texts.push(m.text); }
      const c = m.custom || {};
      if (c.conversation === "deleted") {  // keep only the message that says so
        transcript.textContent = ""; add(m.text || "", "bot"); choices.textContent = ""; lastQuestion = null;
      }
      if (c.crisis && !crisisShown) { resources(c.crisis); crisisShown = true; }
      if (c.contact) resources(c.contact, "How to reach our team");
      if (c.options) options(c.options);
      if (c.field) { render(c); lastQuestionText = texts.slice(-1); texts = []; }
    });
  }

  const sendButton = document.getElementById("send");

  async function post(url, body) {
    status.textContent = "";
    sendButton.disabled = true;
    try {
      const r = await fetch(url, { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
      const data = await r.json();
      show(data.messages || []);
      const asked = (data.messages || []).some(function (m) { return (m.custom || {}).field; });
      if (!r.ok && lastQuestion && !asked) {  // refused: ask the same question again
        lastQuestionText.forEach(function (t) { add(t, "bot"); });
        render(lastQuestion);
      }
      return r.ok;
    } catch (e) {
      // The numbers depend on the service's country: they are in the "Get help now" panel.
      add("Something went wrong on our side. Your answers are saved. If you need help now, the numbers to call are under Get help now.", "bot");
      const panel = document.getElementById("help-panel");
      panel.hidden = false;
      document.getElementById("help-now").setAttribute("aria-expanded", "true");
      return false;
    } finally {
      sendButton.disabled = false;
    }
  }

  async function send(text) {
    add(text, "me");
    const ok = await post("/api/chat", { text: text });
    if (ok) answer.value = "";
    answer.focus();
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    const text = answer.value;
    if (!text.trim()) { status.textContent = "Please type an answer first."; return; }
    send(text);
  });
  document.getElementById("help-now").addEventListener("click", function () {
    const panel = document.getElementById("help-panel");
    panel.hidden = !panel.hidden;
    this.setAttribute("aria-expanded", String(!panel.hidden));
  });
  document.getElementById("restart").addEventListener("click", function () {
    transcript.textContent = ""; post("/api/chat/restart");
  });
  // Leaving ends the chat's session on the server first (the cookie then opens
  // nothing, on a shared device too), and clears what the page shows.
  function leave() {
    try { navigator.sendBeacon("/api/chat/forget"); } catch (e) { /* navigate anyway */ }
    document.body.textContent = "";
    window.location.replace("https://www.google.com/");
  }
  document.getElementById("leave").addEventListener("click", function (e) { e.preventDefault(); leave(); });
  let lastEscape = 0;
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    const now = Date.now();
    if (now - lastEscape < 1000) leave();
    lastEscape = now;
  });
  document.getElementById("resume-form").addEventListener("submit", function (e) {
    e.preventDefault();
    const input = document.getElementById("resume-code");
    const code = input.value.trim();
    if (!code) { status.textContent = "Please type your code first."; input.focus(); return; }
    transcript.textContent = "";
    post("/api/chat/resume", { code: code }).then(function (ok) {
      if (ok) { input.value = ""; document.getElementById("resume").open = false; answer.focus(); }
    });
  });

  // The panel's numbers come from the service's configuration (country and
  // local crisis team); the links in the page are the fallback.
  fetch("/api/help-now", { credentials: "same-origin" }).then(function (r) {
    return r.ok ? r.json() : null;
  }).then(function (data) {
    if (!data || !data.resources || !data.resources.length) return;
    const old = document.getElementById("help-list");
    const list = resources(data, "Ways to get help now", document.createElement("div"));
    list.id = "help-list";
    old.replaceWith(list);
  }).catch(function () {});

  post("/api/chat/start");
})();
