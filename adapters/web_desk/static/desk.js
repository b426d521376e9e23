// certfed web desk: the few things a server-rendered page cannot do. Everything works without it.
"use strict";
(function () {
  // GB 11643 check character (ISO 7064 MOD 11-2), as signing/identity.py computes it.
  function residentIdProblem(value) {
    var v = value.replace(/[\s-]/g, "").toUpperCase();
    if (v.length !== 18) { return "length"; }
    if (!/^[0-9]{17}[0-9X]$/.test(v)) { return "format"; }
    var sum = 0;
    for (var i = 0; i < 17; i++) { sum += Number(v.charAt(i)) * (Math.pow(2, 17 - i) % 11); }
    var check = (12 - (sum % 11)) % 11;
    return (check === 10 ? "X" : String(check)) === v.charAt(17) ? "" : "check";
  }
  document.querySelectorAll("input[data-identity-check]").forEach(function (input) {
    var kind = document.getElementById("identity_type");
    var message = document.getElementById(input.id + "-live");
    if (!message) { return; }
    function check() {
      var type = kind ? kind.value : "resident_id";
      var value = input.value.trim();
      var problem = type === "resident_id" && value.length >= 18 ? residentIdProblem(value) : "";
      message.textContent = problem ? input.getAttribute("data-msg-" + problem) : "";
      message.hidden = !problem;
      input.setAttribute("aria-invalid", problem ? "true" : "false");
    }
    input.addEventListener("input", check);
    if (kind) { kind.addEventListener("change", check); }
  });
  // A preview of the photo chosen for upload, before anything is sent.
  document.querySelectorAll("input[type=file][data-preview]").forEach(function (input) {
    var image = document.getElementById(input.getAttribute("data-preview"));
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      if (image && file && /^image\//.test(file.type)) {
        image.src = URL.createObjectURL(file);
        image.hidden = false;
      } else if (image) {
        image.hidden = true;
      }
    });
  });
  // Work done a page per request (approving every amount change awaiting review): the next
  // page is asked for as soon as this one shows, until the work is done or the person leaves.
  document.querySelectorAll("form[data-auto-submit]").forEach(function (form) {
    var button = form.querySelector("button[type=submit]");
    window.setTimeout(function () {
      if (button) { button.disabled = true; }
      form.submit();
    }, 50);
  });
  // The error summary takes the focus, so a screen reader reads it first.
  var summary = document.querySelector(".error-summary");
  if (summary) { summary.focus(); }
})();
