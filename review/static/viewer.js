// defectflow review: zoom and pan over a full-resolution frame. The browser asks the app for the part it shows at
// the size it shows it (GET .../region); the previous pictures stay in place, scaled, until the new ones arrive.
(function () {
  "use strict";
  const viewer = document.getElementById("viewer");
  if (!viewer) return;
  const W = Number(viewer.dataset.width), H = Number(viewer.dataset.height);
  const url = viewer.dataset.regionUrl;
  const layers = ["image", "heatmap", "contour"].map(function (name) {
    return { name: name, element: document.getElementById("layer-" + name), region: null, token: 0 };
  });
  const boxElement = document.getElementById("box");
  const box = viewer.dataset.box ? viewer.dataset.box.split(",").map(Number) : null; // y0, x0, y1, x1
  const MAX_ZOOM = 16; // screen pixels per frame pixel
  let view = null; // the frame area shown: x, y (top left) and w (width); the height follows the viewer
  let timer = null;

  function size() { return { w: viewer.clientWidth || 1, h: viewer.clientHeight || 1 }; }
  function scale() { return size().w / view.w; }
  function fitView() {
    const s = Math.min(size().w / W, size().h / H);
    const w = size().w / s, h = size().h / s;
    return { x: (W - w) / 2, y: (H - h) / 2, w: w };
  }
  function clamp(next) {
    const fit = fitView();
    const w = Math.min(Math.max(next.w, size().w / MAX_ZOOM), fit.w);
    const h = w * size().h / size().w;
    const x = w >= W ? (W - w) / 2 : Math.min(Math.max(next.x, 0), W - w);
    const y = h >= H ? (H - h) / 2 : Math.min(Math.max(next.y, 0), H - h);
    return { x: x, y: y, w: w };
  }

  function place(element, x, y, w, h) {
    const s = scale();
    element.style.left = (x - view.x) * s + "px";
    element.style.top = (y - view.y) * s + "px";
    element.style.width = w * s + "px";
    element.style.height = h * s + "px";
  }

  function draw() {
    layers.forEach(function (layer) {
      if (layer.region) place(layer.element, layer.region.x, layer.region.y, layer.region.w, layer.region.h);
    });
    if (box && document.getElementById("show-box").checked) {
      boxElement.hidden = false;
      place(boxElement, box[1], box[0], box[3] - box[1], box[2] - box[0]);
    } else {
      boxElement.hidden = true;
    }
    viewer.classList.toggle("native", scale() > 1);
    document.getElementById("zoom-level").textContent = Math.round(scale() * 100) + " %";
  }

  function wanted() {
    const s = scale(), h = view.w * size().h / size().w;
    const x0 = Math.max(0, Math.floor(view.x)), y0 = Math.max(0, Math.floor(view.y));
    const x1 = Math.min(W, Math.ceil(view.x + view.w)), y1 = Math.min(H, Math.ceil(view.y + h));
    const width = Math.max(1, Math.min(4096, Math.round((x1 - x0) * s)));
    const height = Math.max(1, Math.min(4096, Math.round((y1 - y0) * s)));
    return { x: x0, y: y0, w: x1 - x0, h: y1 - y0, width: width, height: height };
  }

  let loads = 0;
  function load() {
    const region = wanted();
    let waiting = layers.length;
    layers.forEach(function (layer) {
      const query = new URLSearchParams({ layer: layer.name, x: region.x, y: region.y, w: region.w, h: region.h,
        width: region.width, height: region.height });
      const picture = new Image();
      const token = ++layer.token;
      picture.onload = function () {
        if (token !== layer.token) return; // a newer view was asked for meanwhile
        layer.element.src = picture.src;
        layer.region = region;
        draw();
        waiting -= 1;
        if (waiting === 0) { // every layer shows the latest view
          viewer.dataset.loaded = String(++loads);
          if (loads === 1) viewer.dataset.firstDrawnMs = String(Math.round(performance.now())); // since navigation
        }
      };
      picture.src = url + "?" + query.toString();
    });
  }

  function show(next) {
    view = clamp(next);
    draw();
    clearTimeout(timer);
    timer = setTimeout(load, 120);
  }

  function zoom(factor, cx, cy) {
    const s = scale();
    const px = cx === undefined ? size().w / 2 : cx, py = cy === undefined ? size().h / 2 : cy;
    const fx = view.x + px / s, fy = view.y + py / s, w = view.w / factor;
    const s2 = size().w / w;
    show({ x: fx - px / s2, y: fy - py / s2, w: w });
  }
  function look(x, y, w, h) { // the frame area x, y, w, h, whole and centred
    const wide = Math.max(w, h * size().w / size().h) * 1.1;
    show({ x: x + w / 2 - wide / 2, y: y + h / 2 - (wide * size().h / size().w) / 2, w: wide });
  }
  function pan(dx, dy) { show({ x: view.x + dx / scale(), y: view.y + dy / scale(), w: view.w }); }

  viewer.addEventListener("wheel", function (event) {
    event.preventDefault();
    const rect = viewer.getBoundingClientRect();
    zoom(event.deltaY < 0 ? 1.25 : 0.8, event.clientX - rect.left, event.clientY - rect.top);
  }, { passive: false });
  let drag = null;
  viewer.addEventListener("pointerdown", function (event) {
    drag = { x: event.clientX, y: event.clientY };
    viewer.setPointerCapture(event.pointerId);
    viewer.classList.add("dragging");
  });
  viewer.addEventListener("pointermove", function (event) {
    if (!drag) return;
    pan(drag.x - event.clientX, drag.y - event.clientY);
    drag = { x: event.clientX, y: event.clientY };
  });
  viewer.addEventListener("pointerup", function () { drag = null; viewer.classList.remove("dragging"); });

  document.querySelectorAll("[data-zoom]").forEach(function (button) {
    button.addEventListener("click", function () {
      const how = button.dataset.zoom;
      if (how === "fit") show(fitView()); else zoom(how === "in" ? 1.5 : 1 / 1.5);
    });
  });
  const opacity = document.getElementById("opacity");
  function toggles() {
    layers[1].element.style.opacity = document.getElementById("show-heatmap").checked ? opacity.value / 100 : 0;
    layers[2].element.hidden = !document.getElementById("show-contour").checked;
    draw();
  }
  ["opacity", "show-heatmap", "show-contour", "show-box"].forEach(function (id) {
    document.getElementById(id).addEventListener("input", toggles);
  });
  function flip(id) { const box = document.getElementById(id); box.checked = !box.checked; toggles(); }

  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) return;
    const step = 80;
    const actions = {
      "+": function () { zoom(1.5); }, "=": function () { zoom(1.5); }, "-": function () { zoom(1 / 1.5); },
      "0": function () { show(fitView()); }, z: function () { if (box) look(box[1], box[0], box[3] - box[1], box[2] - box[0]); },
      h: function () { flip("show-heatmap"); },
      c: function () { flip("show-contour"); }, b: function () { flip("show-box"); },
      ArrowLeft: function () { pan(-step, 0); }, ArrowRight: function () { pan(step, 0); },
      ArrowUp: function () { pan(0, -step); }, ArrowDown: function () { pan(0, step); },
    };
    if (actions[event.key]) { event.preventDefault(); actions[event.key](); }
  });
  window.addEventListener("resize", function () { show(view); });

  view = fitView();
  toggles();
  load();
  window.defectflowViewer = { zoom: zoom, look: look, fit: function () { show(fitView()); },
    view: function () { return view; } };
})();
