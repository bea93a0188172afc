/* Uploads a submit form's files straight from the browser to Blob storage, so no file passes through the portal.

   For each chosen file: check kind, size and count here first (the server checks again before it signs anything),
   ask the portal for a write-only URL to one blob (POST …/uploads/), send the file in 4 MiB blocks (Put Block, then
   Put Block List) with a progress bar per file and one for all, and keep the signed token the portal returned in a
   hidden input: that token, never a path, is what the form posts. No inline script: the page's policy forbids it. */
(function () {
  "use strict";

  var BLOCK_BYTES = 4 * 1024 * 1024;
  var BLOCK_TRIES = 3;
  var PARALLEL_FILES = 3;
  // portal/submit/values.py FILE_NAME_PATTERN: a plain file name, no folders, not starting with a dot or a dash.
  var FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+ -]{0,199}$/;

  var form = document.getElementById("submit-form");
  if (!form) {
    return;
  }
  var uploadUrl = form.dataset.uploadUrl;
  var maxTotal = Number(form.dataset.maxTotal);
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var previewButton = document.getElementById("preview-button");
  var totalBox = form.querySelector(".upload-total");
  var totalBar = document.getElementById("upload-total");
  var totalWords = form.querySelector(".upload-total-words");
  var running = 0;   // files chosen and not yet uploaded or failed
  var active = 0;    // of those, files being sent now
  var waiting = [];
  var batch = { sent: 0, size: 0 };

  function human(size) {
    // The server's rule (portal/units.py human_bytes): decimal units, one decimal place, none when it is zero.
    if (size < 1000) {
      return Math.floor(size) + " bytes";
    }
    var units = ["KB", "MB", "GB", "TB"];
    var value = size;
    var i = 0;
    for (; i < units.length; i++) {
      value /= 1000;
      if (Math.round(value * 10) / 10 < 1000 || i === units.length - 1) {
        break;
      }
    }
    return value.toFixed(1).replace(/\.0$/, "") + " " + units[i];
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function entries(box) {
    return Array.prototype.slice.call(box.querySelectorAll("li.upload:not(.failed)"));
  }

  function bytesChosen() {
    var total = 0;
    form.querySelectorAll("li.upload:not(.failed)").forEach(function (li) {
      total += Number(li.dataset.size || 0);
    });
    return total;
  }

  function showError(box, message) {
    var slot = box.querySelector(".file-error");
    slot.textContent = message;
    slot.hidden = !message;
  }

  function problemWith(box, files) {
    var maxFiles = Number(box.dataset.maxFiles);
    var maxBytes = Number(box.dataset.maxBytes);
    var extensions = (box.dataset.extensions || "").split(" ").filter(Boolean);
    var label = box.dataset.label;
    var kept = maxFiles === 1 ? 0 : entries(box).length;   // a single-file field replaces its file
    if (files.length + kept > maxFiles) {
      return label + ": at most " + plural(maxFiles, "file") + ", please (that would be " + (files.length + kept) +
        "). Nothing was uploaded.";
    }
    var total = bytesChosen();
    for (var i = 0; i < files.length; i++) {
      var file = files[i];
      var lower = file.name.toLowerCase();
      if (!FILE_NAME.test(file.name) || /[ .]$/.test(file.name)) {
        return "“" + file.name + "” is not a plain file name: use letters, digits, spaces, dots, hyphens, " +
          "underscores and plus signs, starting with a letter or digit. Rename it; nothing was uploaded.";
      }
      if (extensions.length && !extensions.some(function (ext) { return lower.endsWith(ext); })) {
        return "“" + file.name + "” is not one of the accepted kinds of file (" + extensions.join(", ") +
          "). Nothing was uploaded.";
      }
      if (file.size > maxBytes) {
        return "“" + file.name + "” is " + human(file.size) + "; the limit is " + human(maxBytes) +
          " per file. Nothing was uploaded.";
      }
      total += file.size;
    }
    if (total > maxTotal) {
      return "These files come to " + human(total) + "; one submission may take at most " + human(maxTotal) +
        ". Nothing was uploaded.";
    }
    return "";
  }

  function refreshButton() {
    previewButton.disabled = running > 0;
    previewButton.textContent = running > 0 ? "Uploading…" : "Preview";
  }

  function refreshTotal() {
    if (!batch.size && !running) {
      return;
    }
    totalBox.hidden = false;
    var pct = batch.size ? Math.floor(100 * batch.sent / batch.size) : 100;
    totalBar.value = pct;
    totalBar.textContent = pct + "%";
    totalWords.textContent = human(batch.sent) + " of " + human(batch.size) + (running ? "" : " — done");
  }

  function refreshRequired(box) {
    var input = box.querySelector("input[type=file]");
    var none = entries(box).length === 0;
    input.required = box.dataset.required === "true" && none;
    if (none) {
      input.value = "";
    }
  }

  function newEntry(box, file) {
    var li = document.createElement("li");
    li.className = "upload";
    li.dataset.size = String(file.size);
    var name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.textContent = "0%";
    bar.setAttribute("aria-label", file.name + " uploaded");
    var state = document.createElement("span");
    state.className = "upload-state small muted";
    state.textContent = "waiting";
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link-button upload-remove";
    remove.textContent = "Remove";
    remove.disabled = true;
    li.append(name, bar, state, remove);
    box.querySelector("ul.uploads").appendChild(li);
    return li;
  }

  function request(method, url, body, headers, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open(method, url);
      Object.keys(headers || {}).forEach(function (key) { xhr.setRequestHeader(key, headers[key]); });
      if (onProgress) {
        xhr.upload.onprogress = function (event) { onProgress(event.loaded); };
      }
      xhr.onload = function () {
        if (xhr.status >= 200 && xhr.status < 300) {
          resolve(xhr);
        } else {
          reject(new Error("storage answered " + xhr.status));
        }
      };
      xhr.onerror = function () { reject(new Error("storage could not be reached")); };
      xhr.send(body);
    });
  }

  function blockId(index) {
    // Every block id of a blob must have the same length.
    return btoa("block-" + String(index).padStart(8, "0"));
  }

  function putBlocks(sasUrl, file, onProgress) {
    var ids = [];
    var index = 0;
    var done = 0;
    function next() {
      if (index * BLOCK_BYTES >= file.size) {
        var xml = '<?xml version="1.0" encoding="utf-8"?><BlockList>' +
          ids.map(function (id) { return "<Latest>" + id + "</Latest>"; }).join("") + "</BlockList>";
        return request("PUT", sasUrl + "&comp=blocklist", xml, {
          "Content-Type": "application/xml",
          "x-ms-blob-content-type": file.type || "application/octet-stream"
        });
      }
      var start = index * BLOCK_BYTES;
      var slice = file.slice(start, Math.min(start + BLOCK_BYTES, file.size));
      var id = blockId(index);
      var tries = 0;
      function attempt() {
        tries += 1;
        return request("PUT", sasUrl + "&comp=block&blockid=" + encodeURIComponent(id), slice, {},
          function (loaded) { onProgress(done + loaded); })
          .catch(function (error) {
            if (tries < BLOCK_TRIES) {
              return attempt();
            }
            throw error;
          });
      }
      return attempt().then(function () {
        ids.push(id);
        done += slice.size;
        onProgress(done);
        index += 1;
        return next();
      });
    }
    return next();
  }

  function pump() {
    while (active < PARALLEL_FILES && waiting.length) {
      active += 1;
      waiting.shift()().finally(function () {
        active -= 1;
        pump();
      });
    }
  }

  function upload(box, file, li, count, total) {
    var bar = li.querySelector("progress");
    var state = li.querySelector(".upload-state");
    var sentBefore = 0;
    running += 1;
    batch.size += file.size;
    refreshButton();
    refreshTotal();
    function progress(sent) {
      var pct = file.size ? Math.floor(100 * sent / file.size) : 100;
      bar.value = pct;
      bar.textContent = pct + "%";
      state.textContent = pct + "%";
      batch.sent += sent - sentBefore;
      sentBefore = sent;
      refreshTotal();
    }
    // Waits its turn: a few files at a time keep each one moving and the page responsive.
    waiting.push(function () {
      return fetch(uploadUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ parameter: box.dataset.parameter, name: file.name, size: file.size, count: count,
                               total: total })
      })
        .then(function (response) {
          return response.json().then(function (data) {
            if (!response.ok) {
              throw new Error(data.error || "The portal refused the upload.");
            }
            return data;
          }, function () { throw new Error("The portal could not start the upload; reload the page."); });
        })
        .then(function (data) {
          state.textContent = "uploading";
          return putBlocks(data.sas_url, file, progress).then(function () { return data; });
        })
        .then(function (data) {
          var hidden = document.createElement("input");
          hidden.type = "hidden";
          hidden.name = box.dataset.parameter;
          hidden.value = data.token;
          li.appendChild(hidden);
          li.classList.add("done");
          progress(file.size);
          state.textContent = "uploaded";
        })
        .catch(function (error) {
          li.classList.add("failed");
          batch.size -= file.size;
          batch.sent -= sentBefore;
          state.textContent = "failed";
          var message = error.message;
          if (/^storage/.test(message)) {
            message = "“" + file.name + "” could not be uploaded (" + message + "); remove it and try again.";
          }
          showError(box, message);
        })
        .finally(function () {
          running -= 1;
          li.querySelector(".upload-remove").disabled = false;
          refreshButton();
          refreshTotal();
          refreshRequired(box);
        });
    });
    pump();
  }

  function choose(box, input) {
    var files = Array.prototype.slice.call(input.files || []);
    if (!files.length) {
      return;
    }
    var problem = problemWith(box, files);
    if (problem) {
      showError(box, problem);
      input.value = "";
      refreshRequired(box);
      return;
    }
    showError(box, "");
    if (Number(box.dataset.maxFiles) === 1) {
      entries(box).forEach(function (li) { li.remove(); });
    }
    var count = files.length + entries(box).length;
    var total = bytesChosen() + files.reduce(function (sum, f) { return sum + f.size; }, 0);
    files.forEach(function (file) {
      var li = newEntry(box, file);
      upload(box, file, li, count, total);
    });
  }

  form.querySelectorAll(".file-param").forEach(function (box) {
    var input = box.querySelector("input[type=file]");
    input.addEventListener("change", function () { choose(box, input); });
    if (input.files && input.files.length) {
      choose(box, input);   // chosen before this script ran (a slow page, or the browser restoring the form)
    }
    box.querySelector("ul.uploads").addEventListener("click", function (event) {
      var button = event.target.closest(".upload-remove");
      if (button && !button.disabled) {
        button.closest("li").remove();
        showError(box, "");
        refreshRequired(box);
      }
    });
  });

  form.addEventListener("submit", function (event) {
    if (running > 0) {
      event.preventDefault();
    }
  });
  window.addEventListener("beforeunload", function (event) {
    if (running > 0) {
      event.preventDefault();   // the browser asks whether to leave while files are still uploading
    }
  });
  form.dataset.uploads = "ready";
})();
