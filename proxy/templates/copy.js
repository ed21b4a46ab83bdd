// exed: a Copy button after each [data-copy] element. The pages work
// without it: the text is selectable.
"use strict";
document.querySelectorAll("[data-copy]").forEach(function (el) {
  if (!navigator.clipboard) return;
  var b = document.createElement("button");
  b.type = "button";
  b.className = "secondary small copy";
  b.textContent = "Copy";
  b.setAttribute("aria-label", "Copy " + el.getAttribute("data-copy"));
  b.addEventListener("click", function () {
    navigator.clipboard.writeText(el.textContent).then(function () {
      b.textContent = "Copied";
    }, function () {
      b.textContent = "Select and copy by hand";
    });
  });
  el.insertAdjacentElement("afterend", b);
});
