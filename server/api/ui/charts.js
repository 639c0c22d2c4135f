"use strict";
// Small line charts on a canvas: a rolling window of samples, the latest on the right.

class LineChart {
  constructor(canvas, { points = 150, color = "#2563eb", format = (v) => v.toFixed(1) } = {}) {
    this.canvas = canvas;
    this.points = points;
    this.color = color;
    this.format = format;
    this.values = [];
  }

  push(value) {
    this.values.push(Number.isFinite(value) ? value : 0);
    if (this.values.length > this.points) this.values.shift();
    this.draw();
  }

  draw() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, this.canvas.clientWidth);
    const height = Math.max(1, this.canvas.clientHeight);
    if (this.canvas.width !== width * ratio || this.canvas.height !== height * ratio) {
      this.canvas.width = width * ratio;
      this.canvas.height = height * ratio;
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const top = Math.max(...this.values, 0) || 1;
    const pad = { left: 4, right: 4, top: 14, bottom: 4 };
    const x = (i) => pad.left + (width - pad.left - pad.right) * (i / (this.points - 1));
    const y = (v) => height - pad.bottom - (height - pad.top - pad.bottom) * (v / top);

    ctx.strokeStyle = "#e3e6eb";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (const level of [0, 0.5, 1]) {
      ctx.moveTo(pad.left, y(top * level) + 0.5);
      ctx.lineTo(width - pad.right, y(top * level) + 0.5);
    }
    ctx.stroke();
    ctx.fillStyle = "#6b7280";
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillText(this.format(top), pad.left + 2, 10);

    if (this.values.length < 2) return;
    const offset = this.points - this.values.length;
    ctx.beginPath();
    this.values.forEach((v, i) => (i ? ctx.lineTo(x(i + offset), y(v)) : ctx.moveTo(x(i + offset), y(v))));
    ctx.strokeStyle = this.color;
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.lineTo(x(this.values.length - 1 + offset), y(0));
    ctx.lineTo(x(offset), y(0));
    ctx.closePath();
    ctx.globalAlpha = 0.12;
    ctx.fillStyle = this.color;
    ctx.fill();
    ctx.globalAlpha = 1;
  }
}

// Prometheus text: every sample's value by metric name (one entry per label set).
function parsePrometheus(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([^\s{]+)(?:\{[^}]*\})?\s+(\S+)/);
    if (!m) continue;
    (out[m[1]] = out[m[1]] || []).push(Number(m[2]));
  }
  return out;
}
