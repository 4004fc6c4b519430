// ragehr serve: stream the answer into the page, and tie citations, evidence and timeline
// together. No framework, no build step; the page works without this file (the form posts).
"use strict";

(function () {
  function $(id) { return document.getElementById(id); }

  function activate(marker, scrollTo) {
    document.querySelectorAll(".active").forEach(function (el) { el.classList.remove("active"); });
    var li = $("ev-" + marker);
    var mark = $("tl-ev-" + marker);
    if (li) li.classList.add("active");
    if (mark) mark.classList.add("active");
    document.querySelectorAll('a.cite[data-marker="' + marker + '"]').forEach(function (a) { a.classList.add("active"); });
    if (scrollTo === "evidence" && li) {
      // scroll the evidence list itself; move the page only when the list is out of view
      var list = li.closest("ol");
      if (list) list.scrollTop = li.offsetTop - 6;
      var box = li.getBoundingClientRect();
      if (box.top < 0 || box.bottom > window.innerHeight) li.scrollIntoView({ block: "nearest" });
    }
    if (scrollTo === "timeline" && mark) $("timeline").scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("a.cite, a.marker, a.ev");
    if (!a) return;
    var marker = a.getAttribute("data-marker");
    if (!marker) return;
    ev.preventDefault();
    var toTimeline = a.classList.contains("marker");
    activate(marker, toTimeline ? "timeline" : "evidence");
  });

  function showError(message) {
    var box = $("error");
    box.textContent = message;
    box.hidden = false;
    document.body.setAttribute("data-state", "error");
  }

  function parseEvents(buffer, onEvent) {
    var parts = buffer.split("\n\n");
    var rest = parts.pop();
    parts.forEach(function (block) {
      var name = "message", data = [];
      block.split("\n").forEach(function (line) {
        if (line.indexOf("event:") === 0) name = line.slice(6).trim();
        else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
      });
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    });
    return rest;
  }

  function submit(form, ev) {
    if (!window.fetch || !window.ReadableStream || !window.TextDecoder) return; // the form posts instead
    ev.preventDefault();
    var button = $("ask-button");
    var answer = $("answer");
    var body = {
      patient_id: form.elements.patient_id.value,
      question: form.elements.question.value,
      strategy: form.elements.strategy.value,
      budget: parseInt(form.elements.budget.value, 10),
      backend: form.elements.backend.value
    };
    $("error").hidden = true;
    $("meta").textContent = "";
    answer.innerHTML = '<div class="streaming" id="stream"></div>';
    $("evidence").innerHTML = '<p class="hint">Selecting evidence and generating&hellip;</p>';
    // the previous answer's evidence leaves the timeline until the new evidence arrives
    document.querySelectorAll("#timeline a.ev, #timeline g.tl-evidence").forEach(function (el) { el.remove(); });
    $("tl-caption").textContent = "";
    button.disabled = true;
    document.body.setAttribute("data-state", "asking");
    var stream = $("stream");
    var finished = false;

    fetch("/api/ask/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
      credentials: "same-origin",
      body: JSON.stringify(body)
    }).then(function (resp) {
      if (!resp.ok) {
        return resp.json().catch(function () { return { error: "request failed (" + resp.status + ")" }; })
          .then(function (j) { throw new Error(j.error || "request failed (" + resp.status + ")"); });
      }
      var reader = resp.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function onEvent(name, data) {
        if (name === "token") {
          stream.textContent += data;
        } else if (name === "result") {
          finished = true;
          answer.innerHTML = data.html.answer;
          $("evidence").innerHTML = data.html.evidence;
          $("meta").innerHTML = data.html.meta;
          $("timeline-box").innerHTML = data.html.timeline;
          $("tl-caption").textContent = data.html.caption;
          document.body.setAttribute("data-state", "answered");
        } else if (name === "error") {
          finished = true;
          answer.innerHTML = "";
          $("evidence").innerHTML = "";
          showError(data.error);
        }
      }
      function pump() {
        return reader.read().then(function (r) {
          if (r.done) {
            if (!finished) showError("the server closed the connection before answering");
            return;
          }
          buffer = parseEvents(buffer + decoder.decode(r.value, { stream: true }), onEvent);
          return pump();
        });
      }
      return pump();
    }).catch(function (err) {
      answer.innerHTML = "";
      $("evidence").innerHTML = "";
      showError(err.message || String(err));
    }).then(function () { button.disabled = false; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = $("ask-form");
    if (form) form.addEventListener("submit", function (ev) { submit(form, ev); });
    document.body.setAttribute("data-state", $("answer") && $("answer").children.length ? "answered" : "ready");
  });
})();
