// defectflow review: the reviewer's name (kept in this browser), and verdicts recorded from the frame page.
(function () {
  "use strict";
  const NAME_KEY = "defectflow.reviewer";
  const reviewer = document.getElementById("reviewer");

  function reviewerName() {
    return reviewer ? reviewer.value.trim() : "";
  }

  if (reviewer) {
    const stored = window.localStorage.getItem(NAME_KEY);
    if (stored) reviewer.value = stored;
    reviewer.addEventListener("change", function () {
      window.localStorage.setItem(NAME_KEY, reviewerName());
      reviewer.classList.toggle("missing", !reviewerName());
    });
  }

  const form = document.getElementById("verdict-form");
  if (!form) return;
  const status = document.getElementById("verdict-status");
  const history = document.getElementById("history");
  const csrf = document.querySelector("meta[name=csrf-token]").content;
  const labels = { defect: "defect", false_alarm: "false alarm", unsure: "unsure" };

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function show(record) {
    say("");
    status.append("recorded: ");
    const tag = document.createElement("span");
    tag.className = "tag v-" + record.verdict;
    tag.textContent = labels[record.verdict] || record.verdict;
    status.append(tag, " by " + record.reviewer);
    const item = document.createElement("li");
    item.dataset.verdict = record.verdict;
    item.append(tag.cloneNode(true), " " + (record.defect_type ? record.defect_type + " · " : "") + record.reviewer +
      " · " + record.recorded_at);
    history.prepend(item);
  }

  async function record(verdict) {
    const name = reviewerName();
    if (!name) {
      say("Enter your name (Reviewer, top right) before recording a verdict.", true);
      reviewer.classList.add("missing");
      reviewer.focus();
      return;
    }
    const body = new URLSearchParams({ verdict: verdict, reviewer: name, csrf_token: csrf,
      note: form.elements.note.value });
    if (verdict === "defect" && form.elements.defect_type.value.trim()) {
      body.set("defect_type", form.elements.defect_type.value.trim());
    }
    say("recording…");
    try {
      const answer = await fetch(form.action, { method: "POST", body: body, credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf } });
      if (!answer.ok) {
        say("not recorded: " + (await answer.text()), true);
        return;
      }
      show(await answer.json());
      form.elements.note.value = "";
    } catch (error) {
      say("not recorded: the app did not answer (" + error + "); try again", true);
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const button = event.submitter;
    if (button && button.value) record(button.value);
  });

  const keys = { d: "defect", f: "false_alarm", u: "unsure" };
  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
    if (keys[event.key]) {
      event.preventDefault();
      record(keys[event.key]);
    } else if (event.key === "n") {
      event.preventDefault();
      window.location.href = document.getElementById("next-unreviewed").href;
    }
  });
})();
