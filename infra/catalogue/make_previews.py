#!/usr/bin/env python3
"""Generate the style-template preview images for the Facemake seed catalogue.

Reads ``catalogue.yaml`` (next to this script), checks it against the catalogue
schema, and writes one 384x512 JPEG (3:4 portrait, quality ~80, < 40 KB, no
EXIF) per template to the path given by its ``preview`` field, normally
``previews/<template-id>.jpg``.

Every preview is an abstract illustration of the style: a background and
palette that evoke it, a stylised head-and-shoulders silhouette, and the
template name at the bottom. Templates with a hand-made renderer (see
``RENDERERS``) get a bespoke picture; any new template falls back to a generic
design coloured from its id, so the script never has to be edited just to add
a style (though adding a renderer makes the preview much better).

The output is deterministic: all randomness comes from ``random.Random`` seeded
with the CRC-32 of the template id, and fonts are the DejaVu fonts found on the
system (falling back to Pillow's bundled font). The same Pillow version and
fonts produce byte-identical files.

How to run (only Pillow and PyYAML are needed; use a throwaway venv):

    python3 -m venv /tmp/pv
    /tmp/pv/bin/pip install pillow pyyaml
    /tmp/pv/bin/python infra/catalogue/make_previews.py            # all templates
    /tmp/pv/bin/python infra/catalogue/make_previews.py neon-noir  # just some ids
    /tmp/pv/bin/python infra/catalogue/make_previews.py --check    # validate only
"""

from __future__ import annotations

import io
import math
import os
import random
import re
import sys
import zlib

import yaml
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
CATALOGUE = os.path.join(HERE, "catalogue.yaml")

W, H = 384, 512
SS = 4  # supersampling factor for anti-aliased masks
JPEG_QUALITY = 80
MAX_BYTES = 40 * 1024

# --------------------------------------------------------------------------
# Catalogue validation (mirrors the limits documented in README.md)
# --------------------------------------------------------------------------

SLUG = re.compile(r"^(?=.{1,64}$)[a-z0-9]+(?:-+[a-z0-9]+)*$")  # no leading/trailing '-'
TAG = re.compile(r"^[a-z0-9-]{1,30}$")
LOCAL_EFFECTS = {
    "grayscale", "sepia", "duotone", "posterize", "pixelate", "blur",
    "invert", "vignette", "sketch", "pop-art", "warm", "cool",
}
CATEGORY_KEYS = {"id", "name", "sortOrder"}
TEMPLATE_KEYS = {
    "id", "name", "description", "category", "tags", "preview", "costCredits",
    "trending", "sortOrder", "active", "generation",
}
GENERATION_KEYS = {"provider", "model", "prompt", "params"}


def validate(cat: dict) -> list[str]:
    """Return a list of human-readable problems (empty when the file is valid)."""
    errs: list[str] = []

    def check(cond: bool, msg: str) -> None:
        if not cond:
            errs.append(msg)

    def text_ok(v, max_len: int) -> bool:
        # same rule as the Rust loader: 1..max chars after trimming, no control characters (newlines included)
        return isinstance(v, str) and 1 <= len(v.strip()) <= max_len and not any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in v)

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    check(set(cat) == {"categories", "templates"}, f"top-level keys must be categories, templates; got {sorted(cat)}")
    cats = cat.get("categories") or []
    tpls = cat.get("templates") or []
    cat_ids = set()
    for c in cats:
        where = f"category {c.get('id')!r}"
        check(set(c) == CATEGORY_KEYS, f"{where}: keys must be {sorted(CATEGORY_KEYS)}, got {sorted(c)}")
        check(isinstance(c.get("id"), str) and bool(SLUG.match(c["id"])), f"{where}: bad id")
        check(c.get("id") not in cat_ids, f"{where}: duplicate id")
        cat_ids.add(c.get("id"))
        check(text_ok(c.get("name"), 60), f"{where}: name must be 1..60 chars")
        check(is_int(c.get("sortOrder")), f"{where}: sortOrder must be an integer")

    ids, orders = set(), set()
    for t in tpls:
        where = f"template {t.get('id')!r}"
        check(set(t) == TEMPLATE_KEYS, f"{where}: keys must be {sorted(TEMPLATE_KEYS)}, got {sorted(t)}")
        tid = t.get("id")
        check(isinstance(tid, str) and bool(SLUG.match(tid)), f"{where}: bad id")
        check(tid not in ids, f"{where}: duplicate id")
        ids.add(tid)
        check(text_ok(t.get("name"), 60), f"{where}: name must be 1..60 chars")
        check(text_ok(t.get("description"), 280), f"{where}: description must be 1..280 chars")
        check(t.get("category") in cat_ids, f"{where}: unknown category {t.get('category')!r}")
        tags = t.get("tags")
        check(isinstance(tags, list) and 1 <= len(tags) <= 8, f"{where}: tags must be a list of 1..8")
        for tag in tags or []:
            check(isinstance(tag, str) and bool(TAG.match(tag)), f"{where}: bad tag {tag!r}")
        check(len(set(tags or [])) == len(tags or []), f"{where}: duplicate tags")
        p = t.get("preview")
        check(isinstance(p, str) and not os.path.isabs(p) and ".." not in p.split("/"), f"{where}: preview must be a relative path")
        check(is_int(t.get("costCredits")) and 1 <= t["costCredits"] <= 5, f"{where}: costCredits must be 1..5")
        check(isinstance(t.get("trending"), bool), f"{where}: trending must be a bool")
        check(isinstance(t.get("active"), bool), f"{where}: active must be a bool")
        so = t.get("sortOrder")
        check(is_int(so), f"{where}: sortOrder must be an integer")
        check(so not in orders, f"{where}: sortOrder {so} is not unique")
        orders.add(so)
        g = t.get("generation") or {}
        check(set(g) == GENERATION_KEYS, f"{where}: generation keys must be {sorted(GENERATION_KEYS)}, got {sorted(g)}")
        prov, model = g.get("provider"), g.get("model")
        check(prov in ("openai", "replicate"), f"{where}: provider must be openai or replicate")
        if prov == "openai":
            check(model == "gpt-image-1", f"{where}: openai model must be gpt-image-1")
        elif prov == "replicate":
            check(isinstance(model, str) and bool(re.match(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$", model)),
                  f"{where}: replicate model must be owner/name")
        check(text_ok(g.get("prompt"), 4000), f"{where}: prompt must be 1..4000 chars on one logical line (use >- folding)")
        params = g.get("params")
        check(isinstance(params, dict), f"{where}: params must be a map")
        if isinstance(params, dict):
            for k, v in params.items():
                check(isinstance(k, str) and isinstance(v, (str, int, float, bool)), f"{where}: params.{k} must be a scalar")
            check(params.get("localEffect") in LOCAL_EFFECTS, f"{where}: params.localEffect must be one of {sorted(LOCAL_EFFECTS)}")
    return errs


# --------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------

def seed_for(tid: str) -> int:
    return zlib.crc32(tid.encode("utf-8"))


def interp(stops, t):
    """Colour at position t in [0, 1] along [(pos, (r, g, b)), ...]."""
    t = min(1.0, max(0.0, t))
    for (p0, c0), (p1, c1) in zip(stops, stops[1:]):
        if t <= p1:
            u = 0.0 if p1 == p0 else (t - p0) / (p1 - p0)
            return tuple(round(a + (b - a) * u) for a, b in zip(c0, c1))
    return tuple(stops[-1][1])


def vgrad(stops, size=(W, H)):
    w, h = size
    col = Image.new("RGB", (1, h))
    col.putdata([interp(stops, y / max(1, h - 1)) for y in range(h)])
    return col.resize((w, h), Image.NEAREST)


def hgrad(stops, size=(W, H)):
    w, h = size
    row = Image.new("RGB", (w, 1))
    row.putdata([interp(stops, x / max(1, w - 1)) for x in range(w)])
    return row.resize((w, h), Image.NEAREST)


def ramp(size, axis, a, b):
    """L mask going 0 -> 255 between coordinates a and b along axis ('x' or 'y')."""
    w, h = size
    n = w if axis == "x" else h
    vals = [round(255 * min(1.0, max(0.0, (i - a) / (b - a)))) for i in range(n)]
    if axis == "x":
        m = Image.new("L", (w, 1))
        m.putdata(vals)
    else:
        m = Image.new("L", (1, h))
        m.putdata(vals)
    return m.resize((w, h), Image.NEAREST)


_RADIAL = Image.radial_gradient("L").point(lambda v: min(255, v * 2))  # 255 at radius 128


def radial(size, center, radius, power=1.0):
    """L mask: 0 at center rising to 255 at `radius` and beyond."""
    w, h = size
    r = max(1, int(radius))
    g = _RADIAL.resize((2 * r, 2 * r), Image.BILINEAR)
    if power != 1.0:
        g = g.point(lambda v: round(255 * (v / 255) ** power))
    m = Image.new("L", (w, h), 255)
    m.paste(g, (int(center[0]) - r, int(center[1]) - r))
    return m


def scale_mask(m, k):
    return m.point(lambda v: round(v * k))


def shift(m, dx, dy):
    out = Image.new(m.mode, m.size, 0)
    out.paste(m, (int(dx), int(dy)))
    return out


def blur(img, r):
    return img.filter(ImageFilter.GaussianBlur(r)) if r > 0 else img


def rim(mask, dx, dy, r=2.0):
    """Inside edge of `mask` on the side opposite to (dx, dy), softened."""
    edge = ImageChops.subtract(mask, shift(mask, dx, dy))
    return ImageChops.multiply(blur(edge, r), mask)


def dilate(mask, px):
    return mask.filter(ImageFilter.MaxFilter(2 * px + 1))


def erode(mask, px):
    return mask.filter(ImageFilter.MinFilter(2 * px + 1))


def fill(img, mask, color):
    img.paste(color, (0, 0), mask)


def glow(img, mask, color, r, k=1.0):
    layer = Image.new("RGB", img.size, (0, 0, 0))
    layer.paste(color, (0, 0), scale_mask(mask, k) if k != 1.0 else mask)
    return ImageChops.screen(img, blur(layer, r))


def noise(rng, size):
    return Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))


def grain(img, rng, amount):
    n = noise(rng, img.size).point(lambda v: v * amount // 255).convert("RGB")
    return ImageChops.add(img, n, 1.0, -(amount // 2))


def darken(img, mask, color=(0, 0, 0), k=1.0):
    return Image.composite(Image.new("RGB", img.size, color), img, scale_mask(mask, k))


def vignette(img, k=0.6, radius=None, color=(0, 0, 0), center=None, power=1.6):
    c = center or (img.size[0] / 2, img.size[1] / 2)
    r = radius or math.hypot(img.size[0], img.size[1]) / 2
    return darken(img, radial(img.size, c, r, power), color, k)


def rect_mask(box, size=(W, H), r=0):
    m = Image.new("L", size, 0)
    d = ImageDraw.Draw(m)
    if r:
        d.rounded_rectangle(box, r, fill=255)
    else:
        d.rectangle(box, fill=255)
    return m


def ellipse_mask(box, size=(W, H), ss=SS):
    m = Image.new("L", (size[0] * ss, size[1] * ss), 0)
    ImageDraw.Draw(m).ellipse([v * ss for v in box], fill=255)
    return m.resize(size, Image.LANCZOS)


def blob_points(rng, cx, cy, rx, ry, wobble=0.25, n=48):
    """A closed irregular blob outline (sum of a few random sines)."""
    waves = [(rng.randint(2, 6), rng.uniform(0, 2 * math.pi), rng.uniform(0.3, 1.0)) for _ in range(4)]
    norm = sum(a for _, _, a in waves)
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        k = 1 + wobble * sum(a * math.sin(f * t + ph) for f, ph, a in waves) / norm
        pts.append((cx + rx * k * math.cos(t), cy + ry * k * math.sin(t)))
    return pts


def poly_mask(pts, size=(W, H), ss=SS):
    m = Image.new("L", (size[0] * ss, size[1] * ss), 0)
    ImageDraw.Draw(m).polygon([(x * ss, y * ss) for x, y in pts], fill=255)
    return m.resize(size, Image.LANCZOS)


# --------------------------------------------------------------------------
# The head-and-shoulders figure
# --------------------------------------------------------------------------

class Fig:
    """Geometry of the stylised bust; all renderers draw relative to it."""

    def __init__(self, cx=W / 2, top=122, s=1.0, size=(W, H)):
        self.size, self.cx, self.top, self.s = size, cx, top, s
        self.hx, self.hy = 64 * s, 82 * s  # head radii
        self.hcy = top + self.hy  # head centre y
        self.chin = top + 2 * self.hy
        self.nw = 31 * s  # half neck width
        self.sh_top = self.chin + 44 * s
        self.sh_rx, self.sh_ry = 188 * s, 150 * s
        self.sh_cy = self.sh_top + self.sh_ry

    def shoulder_y(self, x):
        dx = (x - self.cx) / self.sh_rx
        if abs(dx) >= 1:
            return None
        return self.sh_cy - self.sh_ry * math.sqrt(1 - dx * dx)

    def mask(self, ears=False, spikes=None, hair=None):
        w, h = self.size
        s, k = self.s, SS
        m = Image.new("L", (w * k, h * k), 0)
        d = ImageDraw.Draw(m)

        def E(x0, y0, x1, y1):
            d.ellipse([x0 * k, y0 * k, x1 * k, y1 * k], fill=255)

        cx = self.cx
        E(cx - self.hx, self.top, cx + self.hx, self.chin)
        if hair:  # extra hair volume: (scale_x, scale_y, dy)
            sx, sy, dy = hair
            E(cx - self.hx * sx, self.hcy + dy - self.hy * sy, cx + self.hx * sx, self.hcy + dy + self.hy * sy)
        d.rectangle([(cx - self.nw) * k, self.hcy * k, (cx + self.nw) * k, (self.sh_top + 40 * s) * k], fill=255)
        E(cx - self.sh_rx, self.sh_top, cx + self.sh_rx, self.sh_top + 2 * self.sh_ry)
        # round the neck/shoulder joins: blur then re-threshold (a morphological close)
        m = m.filter(ImageFilter.GaussianBlur(9 * s * k)).point(lambda v: 255 if v > 110 else 0)
        d = ImageDraw.Draw(m)
        if ears:
            for sign in (-1, 1):
                bx = cx + sign * (self.hx - 6 * s)
                d.polygon([((bx) * k, (self.hcy - 8 * s) * k),
                           ((bx) * k, (self.hcy + 22 * s) * k),
                           ((bx + sign * 44 * s) * k, (self.hcy - 26 * s) * k)], fill=255)
        if spikes:
            for ang, length, half, sweep in spikes:  # degrees (270 = up), length factor, half width, apex sweep
                def P(a, rf):
                    a = math.radians(a)
                    return ((cx + self.hx * rf * math.cos(a)) * k, (self.hcy + self.hy * rf * math.sin(a)) * k)
                d.polygon([P(0, 0), P(ang - half, 1.0), P(ang + sweep, length), P(ang + half, 1.0)], fill=255)
        return m.resize((w, h), Image.LANCZOS)

    def head_mask(self, grow=0):
        g = grow
        return ellipse_mask((self.cx - self.hx - g, self.top - g, self.cx + self.hx + g, self.chin + g), self.size)

    def below(self, y, soft=0):
        w, h = self.size
        return ramp((w, h), "y", y - soft / 2, y + soft / 2 + 0.001)


# --------------------------------------------------------------------------
# Fonts and the name label
# --------------------------------------------------------------------------

FONT_DIRS = [
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/Library/Fonts",
    os.path.expanduser("~/Library/Fonts"),
]


def font(name, size):
    for d in FONT_DIRS:
        p = os.path.join(d, name)
        if os.path.exists(p):
            return ImageFont.truetype(p, size)
    return ImageFont.load_default(size)


def fitted_font(name, text, max_w, size, min_size=14):
    f = font(name, size)
    while f.getlength(text) > max_w and size > min_size:
        size -= 1
        f = font(name, size)
    return f


def label(img, text, *, face="DejaVuSans-Bold.ttf", size=34, color=(255, 255, 255),
          y=H - 40, stroke=0, stroke_color=(0, 0, 0), scrim=((0, 0, 0), 0.65, 150),
          glow_color=None, glow_r=6, shadow=True, chroma=None, max_w=W - 40):
    """Draw the template name centred at the bottom of the preview."""
    if scrim:
        col, k, height = scrim
        m = ramp(img.size, "y", H - height, H)
        m = m.point(lambda v: round(255 * k * (v / 255) ** 1.3))
        img = darken(img, m, col)
    f = fitted_font(face, text, max_w, size)
    pos = (W / 2, y)
    if shadow:
        sm = Image.new("L", img.size, 0)
        ImageDraw.Draw(sm).text(pos, text, font=f, fill=255, anchor="mm", stroke_width=stroke)
        img = darken(img, blur(shift(sm, 1, 2), 3), (0, 0, 0), 0.7)
    if glow_color:
        gm = Image.new("L", img.size, 0)
        ImageDraw.Draw(gm).text(pos, text, font=f, fill=255, anchor="mm", stroke_width=2)
        img = glow(img, gm, glow_color, glow_r)
        img = glow(img, gm, glow_color, glow_r / 2)
    d = ImageDraw.Draw(img)
    if chroma:
        (c1, c2), off = chroma
        d.text((pos[0] - off, pos[1]), text, font=f, fill=c1, anchor="mm")
        d.text((pos[0] + off, pos[1]), text, font=f, fill=c2, anchor="mm")
    d.text(pos, text, font=f, fill=color, anchor="mm", stroke_width=stroke, stroke_fill=stroke_color)
    return img


# --------------------------------------------------------------------------
# Renderers, one per template id. Each returns a finished RGB image.
# --------------------------------------------------------------------------

def r_neon_noir(rng, t):
    img = vgrad([(0, (14, 10, 38)), (0.55, (30, 12, 52)), (1, (6, 6, 14))])
    signs = Image.new("RGB", img.size, (0, 0, 0))
    d = ImageDraw.Draw(signs)
    neon = [(255, 40, 170), (40, 220, 255), (160, 80, 255), (255, 90, 60)]
    for _ in range(9):
        c = rng.choice(neon)
        x, y = rng.randint(-20, W - 30), rng.randint(10, 330)
        if rng.random() < 0.5:
            d.rectangle([x, y, x + rng.randint(40, 110), y + rng.randint(14, 30)], outline=c, width=3)
        else:
            d.rectangle([x, y, x + rng.randint(4, 7), y + rng.randint(60, 160)], fill=c)
    bokeh = Image.new("RGB", img.size, (0, 0, 0))
    bd = ImageDraw.Draw(bokeh)
    for _ in range(26):
        c = tuple(v // 2 for v in rng.choice(neon))
        x, y, r = rng.randint(0, W), rng.randint(0, 380), rng.randint(6, 22)
        bd.ellipse([x - r, y - r, x + r, y + r], fill=c)
    img = ImageChops.screen(img, blur(bokeh, 4))
    img = ImageChops.screen(img, blur(signs, 9))
    img = ImageChops.screen(img, blur(signs, 1.2))
    rain = Image.new("RGB", img.size, (0, 0, 0))
    rd = ImageDraw.Draw(rain)
    for _ in range(160):
        x, y, ln = rng.randint(-40, W), rng.randint(-20, H), rng.randint(8, 26)
        v = rng.randint(50, 120)
        rd.line([x, y, x + ln * 0.35, y + ln], fill=(v, v + 10, v + 40), width=1)
    img = ImageChops.screen(img, rain)
    fig = Fig()
    m = fig.mask()
    fill(img, m, (10, 8, 18))
    img = glow(img, rim(m, 9, 0, 2.5), (255, 40, 170), 1.2)
    img = glow(img, rim(m, -9, 0, 2.5), (40, 220, 255), 1.2)
    img = glow(img, rim(m, 0, 9, 3), (120, 60, 200), 2, 0.5)
    img = vignette(img, 0.55)
    img = grain(img, rng, 14)
    return label(img, t["name"], glow_color=(255, 40, 170), glow_r=8, color=(255, 235, 250))


def r_studio_headshot(rng, t):
    img = Image.new("RGB", (W, H), (92, 88, 84))
    img = Image.composite(Image.new("RGB", img.size, (92, 88, 84)), Image.new("RGB", img.size, (204, 198, 190)),
                          radial(img.size, (170, 190), 360, 1.2))
    fig = Fig()
    m = fig.mask()
    img = darken(img, blur(shift(m, 18, 8), 16), (40, 36, 34), 0.45)  # soft cast shadow
    suit = hgrad([(0, (78, 74, 72)), (0.6, (46, 44, 44)), (1, (30, 30, 32))])
    img.paste(suit, (0, 0), m)
    img = glow(img, rim(m, 7, 9, 2.5), (255, 238, 215), 1.5, 0.9)  # hair/key light, upper left
    img = glow(img, rim(m, -5, 0, 2), (150, 150, 160), 1.5, 0.35)  # fill edge
    img = vignette(img, 0.5)
    img = grain(img, rng, 6)
    return label(img, t["name"], face="DejaVuSansCondensed-Bold.ttf", scrim=((20, 18, 18), 0.55, 130))


def r_golden_hour(rng, t):
    img = vgrad([(0, (255, 200, 130)), (0.45, (250, 160, 95)), (0.75, (215, 120, 90)), (1, (150, 85, 70))])
    sun = (262, 238)
    img = glow(img, ImageOps.invert(radial(img.size, sun, 260, 0.9)), (255, 236, 190), 0, 0.75)
    meadow = Image.new("RGB", img.size, (0, 0, 0))
    md = ImageDraw.Draw(meadow)
    for _ in range(40):
        x, y, r = rng.randint(-20, W + 20), rng.randint(330, H), rng.randint(20, 60)
        md.ellipse([x - r, y - r * 0.6, x + r, y + r * 0.6], fill=rng.choice([(120, 90, 20), (150, 110, 30), (90, 70, 30)]))
    img = Image.composite(blur(meadow, 10), img, ramp(img.size, "y", 330, 400))
    bok = Image.new("RGB", img.size, (0, 0, 0))
    bd = ImageDraw.Draw(bok)
    for _ in range(22):
        x, y, r = rng.randint(0, W), rng.randint(200, H), rng.randint(5, 16)
        bd.ellipse([x - r, y - r, x + r, y + r], fill=(120, 90, 40))
    img = ImageChops.screen(img, blur(bok, 2.5))
    fig = Fig(cx=W / 2 - 14)
    m = fig.mask()
    fill(img, m, (84, 46, 38))
    img.paste(hgrad([(0, (70, 38, 34)), (1, (120, 66, 44))]), (0, 0), ImageChops.multiply(m, ramp(img.size, "x", 0, W)))
    img = glow(img, rim(m, -8, 4, 2.5), (255, 214, 130), 1.5)
    img = glow(img, rim(m, -3, 3, 1), (255, 240, 200), 0.5)
    core = ImageOps.invert(radial(img.size, sun, 46, 2.5))
    img = glow(img, ImageChops.multiply(core, ImageOps.invert(m)), (255, 250, 230), 2)
    flare = Image.new("RGB", img.size, (0, 0, 0))
    fd = ImageDraw.Draw(flare)
    for i, (f, r) in enumerate([(0.35, 16), (0.6, 9), (0.85, 24), (1.15, 12)]):
        x = sun[0] + (90 - sun[0]) * f
        y = sun[1] + (430 - sun[1]) * f
        fd.ellipse([x - r, y - r, x + r, y + r], fill=(70, 55, 30) if i % 2 else (60, 40, 40))
    img = ImageChops.screen(img, blur(flare, 1.5))
    img = grain(img, rng, 10)
    return label(img, t["name"], scrim=((60, 25, 15), 0.6, 140), color=(255, 244, 224))


def r_anime_hero(rng, t):
    img = vgrad([(0, (30, 105, 225)), (0.6, (95, 170, 245)), (1, (170, 215, 252))])
    d = ImageDraw.Draw(img)

    def cloud(x, y, k):
        puffs = [(0, 0, 40), (38, -20, 46), (80, -4, 40), (44, 14, 42), (-34, 12, 30), (112, 14, 30), (8, 22, 30)]
        for dx, dy, r in puffs:
            r *= k
            d.ellipse([x + dx * k - r, y + dy * k - r + 9 * k, x + dx * k + r, y + dy * k + r + 9 * k], fill=(178, 205, 240))
        for dx, dy, r in puffs:
            r *= k * 0.92
            d.ellipse([x + dx * k - r - 4 * k, y + dy * k - r - 4 * k, x + dx * k + r - 4 * k, y + dy * k + r - 4 * k], fill=(255, 255, 255))

    cloud(40, 330, 1.2)
    cloud(270, 300, 1.0)
    cloud(-10, 80, 0.7)
    cloud(300, 90, 0.55)
    for _ in range(6):
        x, y, r = rng.randint(20, W - 20), rng.randint(20, 260), rng.randint(4, 9)
        d.polygon([(x, y - r), (x + r * 0.25, y - r * 0.25), (x + r, y), (x + r * 0.25, y + r * 0.25),
                   (x, y + r), (x - r * 0.25, y + r * 0.25), (x - r, y), (x - r * 0.25, y - r * 0.25)], fill=(255, 255, 240))
    fig = Fig(top=132)
    spikes = [(166, 1.3, 14, -22), (192, 1.42, 15, -20), (218, 1.5, 15, 22), (246, 1.58, 15, 24),
              (274, 1.6, 15, 26), (302, 1.55, 15, 26), (330, 1.45, 15, 26), (356, 1.32, 14, 24), (20, 1.2, 12, 20)]
    m = fig.mask(spikes=spikes)
    fill(img, dilate(m, 3), (22, 22, 40))
    fill(img, m, (78, 92, 170))
    shadow = ImageChops.multiply(m, poly_mask([(W / 2 + 10, 0), (W, 0), (W, H), (W / 2 - 60, H)]))
    fill(img, shadow, (50, 58, 122))
    hl = fig.top + fig.hy * 0.62
    bangs = [(fig.cx + dx, hl) for dx in range(-70, 71, 20)]
    bang_pts = [(fig.cx - 70, hl - 4)]
    for i, (x, y) in enumerate(bangs[:-1]):
        bang_pts += [(x, y), (x + 12, y + 34 - (i % 3) * 9)]
    bang_pts += [(fig.cx + 70, hl), (fig.cx + 70, hl - 4)]
    hair = ImageChops.multiply(m, ImageChops.lighter(ImageOps.invert(fig.below(hl, 2)), poly_mask(bang_pts)))
    fill(img, hair, (44, 40, 96))
    fill(img, ImageChops.multiply(hair, shadow), (30, 28, 70))
    ring = Image.new("L", (W * SS, H * SS), 0)
    ImageDraw.Draw(ring).arc([(fig.cx - fig.hx + 8) * SS, (fig.top + 14) * SS, (fig.cx + fig.hx - 8) * SS, (fig.top + 120) * SS],
                             205, 300, fill=255, width=7 * SS)
    fill(img, ImageChops.multiply(ring.resize((W, H), Image.LANCZOS), hair), (150, 175, 250))
    img = glow(img, rim(m, 5, 6, 0.6), (200, 225, 255), 0, 0.9)
    img = grain(img, rng, 4)
    return label(img, t["name"], size=36, stroke=3, stroke_color=(20, 30, 80), scrim=None)


def r_comic_book(rng, t):
    img = Image.new("RGB", (W, H), (255, 214, 10))
    cx, cy, R, n = W / 2, 210, 700, 18
    rays = Image.new("L", img.size, 0)
    for i in range(0, n, 2):
        a0, a1 = 2 * math.pi * i / n, 2 * math.pi * (i + 1) / n
        wedge = [(cx, cy), (cx + R * math.cos(a0), cy + R * math.sin(a0)), (cx + R * math.cos(a1), cy + R * math.sin(a1))]
        rays = ImageChops.lighter(rays, poly_mask(wedge))
    fill(img, rays, (235, 45, 35))
    dots = Image.new("L", (W * 2, H * 2), 0)
    dd = ImageDraw.Draw(dots)
    for row, y in enumerate(range(0, H + 16, 16)):
        for x in range(-8 if row % 2 else 0, W + 16, 16):
            r = 5.2 * min(1, math.hypot(x - cx, y - cy) / 330)
            if r > 0.9:
                dd.ellipse([2 * (x - r), 2 * (y - r), 2 * (x + r), 2 * (y + r)], fill=255)
    dots = dots.resize((W, H), Image.LANCZOS)
    img = darken(img, ImageChops.multiply(dots, ImageOps.invert(rays)), (210, 60, 0), 0.4)
    fig = Fig()
    m = fig.mask()
    fill(img, dilate(m, 5), (10, 10, 10))
    fill(img, m, (40, 110, 225))
    tone = Image.new("L", (W * 2, H * 2), 0)
    td = ImageDraw.Draw(tone)
    for row, y in enumerate(range(0, H + 12, 12)):
        for x in range(-6 if row % 2 else 0, W + 12, 12):
            r = 4.2 * min(1, max(0, (x - 150) / 200))
            if r > 0.7:
                td.ellipse([2 * (x - r), 2 * (y - r), 2 * (x + r), 2 * (y + r)], fill=255)
    tone = tone.resize((W, H), Image.LANCZOS)
    fill(img, ImageChops.multiply(tone, m), (15, 50, 140))
    d = ImageDraw.Draw(img)
    hx0, hy0 = fig.cx - fig.hx + 16, fig.hcy - 30
    d.arc([hx0, hy0, hx0 + 40, hy0 + 80], 160, 250, fill=(230, 240, 255), width=4)
    img = ImageChops.multiply(img, Image.new("RGB", img.size, (250, 242, 225)))
    return label(img, t["name"].upper(), size=40, color=(255, 236, 40), stroke=4, stroke_color=(10, 10, 10),
                 scrim=None, shadow=False, y=H - 44)


def r_pixel_art(rng, t):
    px = 8
    w, h = W // px, H // px  # 48 x 64
    small = Image.new("RGB", (w, h))
    band = [(18, 16, 52), (24, 22, 70), (30, 30, 92), (40, 40, 112), (52, 52, 130)]
    for y in range(h):
        c = band[min(len(band) - 1, y * len(band) // h)]
        for x in range(w):
            small.putpixel((x, y), c)
    for _ in range(26):
        x, y = rng.randrange(w), rng.randrange(h - 14)
        c = rng.choice([(255, 255, 255), (255, 230, 120), (150, 200, 255)])
        small.putpixel((x, y), c)
        if rng.random() < 0.2 and 0 < x < w - 1 and 0 < y:
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                small.putpixel((x + dx, y + dy), tuple(v // 2 for v in c))
    fig = Fig(top=118)
    m = fig.mask().resize((w, h), Image.BOX).point(lambda v: 255 if v > 127 else 0)
    skin, skin_d = (238, 188, 150), (204, 146, 116)
    hair, hair_d = (112, 62, 36), (80, 42, 26)
    shirt, shirt_d = (214, 62, 70), (160, 40, 56)
    cx, hcy = fig.cx / px, fig.hcy / px
    for y in range(h):
        for x in range(w):
            if not m.getpixel((x, y)):
                continue
            yy, right = (y + 0.5) * px, x + 0.5 > cx + 2
            if yy >= fig.sh_top - 4:
                c = shirt_d if right else shirt
            elif yy > fig.chin - 4:
                c = skin_d
            elif yy < fig.top + fig.hy * 0.7 or (yy < fig.hcy + 20 and abs(x + 0.5 - cx) > fig.hx / px - 1.5):
                c = hair_d if right else hair
            else:
                c = skin_d if right else skin
            small.putpixel((x, y), c)
    ey = int(hcy + 1)
    for ex in (int(cx - 4), int(cx + 3)):
        small.putpixel((ex, ey), (30, 30, 60))
        small.putpixel((ex, ey - 1), (30, 30, 60))
    for mx in range(int(cx - 1), int(cx + 1)):
        small.putpixel((mx, int(hcy + 5)), (170, 80, 80))
    for y in range(h):
        for x in range(w):
            if m.getpixel((x, y)):
                continue
            if any(0 <= x + dx < w and 0 <= y + dy < h and m.getpixel((x + dx, y + dy))
                   for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))):
                small.putpixel((x, y), (12, 10, 30))
    img = small.resize((W, H), Image.NEAREST)
    d = ImageDraw.Draw(img)
    box = (16, 420, W - 16, 496)
    d.rectangle(box, fill=(16, 20, 64))
    d.rectangle(box, outline=(255, 255, 255), width=4)
    d.rectangle((box[0] + 8, box[1] + 8, box[2] - 8, box[3] - 8), outline=(90, 110, 200), width=2)
    d.polygon([(W - 46, 478), (W - 34, 478), (W - 40, 486)], fill=(255, 255, 255))
    return label(img, t["name"].upper(), face="DejaVuSansMono-Bold.ttf", size=30, y=458, scrim=None, shadow=False,
                 color=(255, 255, 255), max_w=W - 80)


def r_renaissance_oil(rng, t):
    img = Image.composite(Image.new("RGB", (W, H), (28, 18, 10)), Image.new("RGB", (W, H), (118, 84, 46)),
                          radial((W, H), (140, 190), 330, 0.9))
    # arched window with an atmospheric landscape
    wx0, wy0, wx1, wy1 = 262, 64, 346, 214
    win = Image.new("L", (W, H), 0)
    wd = ImageDraw.Draw(win)
    wd.rectangle([wx0, wy0 + 42, wx1, wy1], fill=255)
    wd.ellipse([wx0, wy0, wx1, wy0 + 84], fill=255)
    land = vgrad([(0, (160, 178, 176)), (0.45, (196, 196, 170)), (0.6, (120, 140, 128)), (1, (70, 84, 60))])
    ld = ImageDraw.Draw(land)
    ld.polygon([(wx0, 160), (290, 140), (320, 152), (wx1, 138), (wx1, 230), (wx0, 230)], fill=(98, 118, 116))
    ld.polygon([(wx0, 180), (300, 168), (wx1, 176), (wx1, 230), (wx0, 230)], fill=(74, 88, 58))
    ld.ellipse([296, 150, 312, 176], fill=(50, 62, 40))
    ld.line([(304, 170), (304, 182)], fill=(50, 40, 30), width=2)
    img.paste(blur(land, 1.2), (0, 0), win)
    frame = ImageChops.subtract(dilate(win, 5), win)
    fill(img, frame, (58, 42, 28))
    fig = Fig(cx=W / 2 - 20, top=118)
    m = fig.mask()
    fill(img, m, (92, 22, 30))
    velvet = ImageChops.multiply(m, fig.below(fig.chin + 10))
    img.paste(hgrad([(0, (150, 40, 46)), (0.45, (96, 22, 30)), (1, (40, 10, 16))]), (0, 0), velvet)
    skin = Image.composite(Image.new("RGB", (W, H), (96, 60, 40)), Image.new("RGB", (W, H), (232, 196, 152)),
                           radial((W, H), (fig.cx - 30, fig.hcy - 30), 130, 0.9))
    head = ImageChops.multiply(m, ImageOps.invert(fig.below(fig.chin + 12, 6)))
    img.paste(skin, (0, 0), head)
    hair = ImageChops.multiply(fig.head_mask(3), ellipse_mask((fig.cx - fig.hx - 8, fig.top - 10, fig.cx + fig.hx + 8, fig.top + fig.hy * 0.95)))
    hair = ImageChops.lighter(hair, ImageChops.multiply(fig.head_mask(3), ImageChops.multiply(
        ImageOps.invert(ellipse_mask((fig.cx - fig.hx + 14, fig.top, fig.cx + fig.hx - 14, fig.chin + 40))), ImageOps.invert(fig.below(fig.chin - 8)))))
    fill(img, hair, (48, 30, 18))
    collar = Image.new("L", (W * SS, H * SS), 0)
    ImageDraw.Draw(collar).arc([(fig.cx - 62) * SS, (fig.chin - 14) * SS, (fig.cx + 62) * SS, (fig.sh_top + 30) * SS],
                               10, 170, fill=255, width=9 * SS)
    collar = ImageChops.multiply(collar.resize((W, H), Image.LANCZOS), m)
    fill(img, collar, (226, 216, 190))
    img = img.filter(ImageFilter.ModeFilter(5))
    img = blur(img, 0.6)
    crack = Image.new("L", (W, H), 0)
    cd = ImageDraw.Draw(crack)
    for _ in range(70):
        x, y, a = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(0, 2 * math.pi)
        pts = [(x, y)]
        for _ in range(rng.randint(6, 14)):
            a += rng.uniform(-0.9, 0.9)
            x, y = x + 11 * math.cos(a), y + 11 * math.sin(a)
            pts.append((x, y))
        cd.line(pts, fill=255, width=1)
    img = darken(img, crack, (20, 12, 6), 0.22)
    img = ImageChops.multiply(img, Image.new("RGB", img.size, (255, 236, 200)))
    img = grain(img, rng, 10)
    # gilded frame
    outer = Image.new("L", (W, H), 255)
    inner = rect_mask((16, 16, W - 17, H - 17))
    gold = vgrad([(0, (214, 172, 84)), (0.5, (150, 110, 40)), (1, (206, 164, 78))])
    img.paste(gold, (0, 0), ImageChops.subtract(outer, inner))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, W - 1, H - 1), outline=(96, 66, 22), width=2)
    d.rectangle((6, 6, W - 7, H - 7), outline=(240, 210, 130), width=1)
    d.rectangle((14, 14, W - 15, H - 15), outline=(80, 54, 18), width=2)
    f = fitted_font("DejaVuSerif-Bold.ttf", t["name"], 230, 24)
    tw = f.getlength(t["name"])
    px0, px1 = W / 2 - tw / 2 - 20, W / 2 + tw / 2 + 20
    img = darken(img, blur(rect_mask((px0 + 2, 446, px1 + 2, 492), r=6), 3), (0, 0, 0), 0.6)
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((px0, 442, px1, 488), 6, fill=(204, 166, 88), outline=(110, 76, 26), width=2)
    d.rounded_rectangle((px0 + 4, 446, px1 - 4, 484), 4, outline=(236, 206, 140), width=1)
    d.text((W / 2, 465), t["name"], font=f, fill=(54, 34, 12), anchor="mm")
    return img


def _wash(img, m, color, k=0.55, edge=0.5):
    """Multiply a watercolour wash of `color` through mask m (with darker dried edges)."""
    a = blur(m, 1.5)
    e = ImageChops.subtract(a, blur(erode(m, 2), 5))
    alpha = ImageChops.add(scale_mask(a, k), scale_mask(e, edge))
    layer = Image.new("RGB", img.size, (255, 255, 255))
    layer.paste(color, (0, 0), alpha)
    return ImageChops.multiply(img, layer)


def _ragged(rng, m, amount=0.4, r=6):
    n = ImageOps.autocontrast(blur(noise(rng, m.size), 2.5))
    return Image.blend(blur(m, r), n, amount).point(lambda v: 255 if v > 128 else 0)


def r_watercolour_wash(rng, t):
    img = Image.new("RGB", (W, H), (250, 246, 238))
    paper = blur(noise(rng, img.size), 0.8).point(lambda v: 235 + v * 20 // 255).convert("RGB")
    img = ImageChops.multiply(img, paper)
    for cx, cy, rx, ry, c in [(80, 90, 120, 90, (240, 170, 180)), (320, 200, 100, 150, (150, 205, 205)),
                              (90, 400, 130, 90, (240, 210, 150)), (300, 60, 80, 60, (200, 190, 235))]:
        img = _wash(img, poly_mask(blob_points(rng, cx, cy, rx, ry, 0.3)), c, 0.5, 0.5)
    fig = Fig()
    m = fig.mask()
    head = ImageChops.multiply(m, ImageOps.invert(fig.below(fig.chin + 30, 40)))
    body = ImageChops.multiply(m, fig.below(fig.chin + 30, 40))
    fade = ImageOps.invert(ramp(img.size, "y", 370, 470)).point(lambda v: round(255 * (v / 255) ** 1.5))
    img = _wash(img, _ragged(rng, head), (236, 170, 150), 0.55, 0.55)
    img = _wash(img, ImageChops.multiply(_ragged(rng, body, 0.45, 8), fade), (110, 175, 190), 0.6, 0.5)
    hair = ImageChops.multiply(_ragged(rng, fig.head_mask(4)), ellipse_mask((fig.cx - 90, fig.top - 30, fig.cx + 90, fig.top + 80)))
    img = _wash(img, hair, (196, 140, 120), 0.45, 0.5)
    drops = Image.new("L", img.size, 0)
    dd = ImageDraw.Draw(drops)
    for _ in range(24):
        x, y, r = rng.randint(10, W - 10), rng.randint(10, H - 90), rng.uniform(1.5, 5)
        dd.ellipse([x - r, y - r, x + r, y + r], fill=255)
    img = _wash(img, drops, (200, 120, 150), 0.6, 0.3)
    line = ImageChops.subtract(m, erode(m, 1))
    line = ImageChops.multiply(line, ImageOps.autocontrast(blur(noise(rng, img.size), 6)))
    img = darken(img, line, (90, 90, 100), 0.6)
    return label(img, t["name"], face="DejaVuSerif-Italic.ttf", size=34, color=(60, 72, 96),
                 scrim=None, shadow=False)


def r_charcoal_sketch(rng, t):
    img = Image.new("RGB", (W, H), (238, 234, 226))
    tooth = noise(rng, (W // 2, H)).resize((W, H), Image.BILINEAR).point(lambda v: 232 + v * 22 // 255)
    img = ImageChops.multiply(img, tooth.convert("RGB"))
    fig = Fig()
    m = fig.mask()
    smudge = blur(ImageChops.multiply(m, ramp(img.size, "x", fig.cx - 20, fig.cx + 120)), 10)
    img = darken(img, smudge, (60, 58, 56), 0.35)
    bg = blur(poly_mask(blob_points(rng, 80, 200, 90, 150, 0.35)), 22)
    img = darken(img, bg, (80, 78, 74), 0.3)
    lines = Image.new("L", (W * 2, H * 2), 0)
    d = ImageDraw.Draw(lines)
    k = 2

    def stroke(pts, width, val):
        d.line([(x * k, y * k) for x, y in pts], fill=val, width=width * k, joint="curve")

    for pass_ in range(3):
        j = lambda: rng.uniform(-2.5, 2.5)
        a0 = rng.uniform(-0.3, 0.3)
        head = [(fig.cx + (fig.hx + j()) * math.cos(a0 + 2 * math.pi * i / 60), fig.hcy + (fig.hy + j()) * math.sin(a0 + 2 * math.pi * i / 60))
                for i in range(rng.randint(52, 64))]
        stroke(head, 2 if pass_ == 0 else 1, 230 if pass_ == 0 else 150)
        for sign in (-1, 1):
            x = fig.cx + sign * (fig.nw - 2 + j())
            stroke([(x, fig.chin - 30), (x + sign * 2, fig.chin + 10), (x + sign * 8, fig.sh_top + 10)], 2, 200)
            pts = []
            for i in range(30):
                xx = fig.cx + sign * (fig.nw + 14 + i * (fig.sh_rx - fig.nw - 20) / 29)
                yy = fig.shoulder_y(xx)
                if yy is not None:
                    pts.append((xx + j() * 0.4, yy + j()))
            stroke(pts, 2 if pass_ == 0 else 1, 220 if pass_ == 0 else 140)
    hatch = Image.new("L", (W * 2, H * 2), 0)
    hd = ImageDraw.Draw(hatch)
    for x in range(-H, W + H, 7):
        x += rng.uniform(-1.5, 1.5)
        hd.line([(x * k, 0), ((x + H * 0.6) * k, H * k)], fill=rng.randint(110, 190), width=k)
    hatch = hatch.resize((W, H), Image.LANCZOS)
    shade = ImageChops.multiply(m, ramp(img.size, "x", fig.cx - 10, fig.cx + 70))
    shade = ImageChops.lighter(shade, ImageChops.multiply(ImageOps.invert(m), ImageChops.multiply(ramp(img.size, "x", 260, 380), ramp(img.size, "y", 120, 200))))
    img = darken(img, ImageChops.multiply(hatch, shade), (40, 38, 36), 0.8)
    lines = lines.resize((W, H), Image.LANCZOS)
    img = darken(img, lines, (34, 32, 30), 0.9)
    guide = Image.new("L", (W, H), 0)
    gd = ImageDraw.Draw(guide)
    gd.line([(fig.cx, fig.top - 40), (fig.cx + 3, fig.chin + 20)], fill=255)
    gd.line([(fig.cx - fig.hx - 20, fig.hcy + 4), (fig.cx + fig.hx + 20, fig.hcy + 2)], fill=255)
    gd.line([(fig.cx - 40, fig.hcy + 40), (fig.cx + 40, fig.hcy + 41)], fill=255)
    img = darken(img, guide, (90, 88, 84), 0.35)
    er = Image.new("L", (W, H), 0)
    ed = ImageDraw.Draw(er)
    for _ in range(4):
        x, y = rng.uniform(fig.cx - 40, fig.cx + 20), rng.uniform(fig.top + 20, fig.chin - 30)
        ed.line([(x, y), (x + rng.uniform(10, 26), y + rng.uniform(-8, 8))], fill=255, width=3)
    img = darken(img, blur(er, 1), (246, 242, 234), 0.7)
    return label(img, t["name"], face="DejaVuSerif-BoldItalic.ttf", size=32, color=(40, 38, 36), scrim=None, shadow=False)


def r_cyberpunk_chrome(rng, t):
    img = vgrad([(0, (18, 6, 42)), (0.5, (62, 12, 78)), (1, (12, 6, 28))])
    city = Image.new("RGB", img.size, (0, 0, 0))
    lit = Image.new("RGB", img.size, (0, 0, 0))
    cd, ld = ImageDraw.Draw(city), ImageDraw.Draw(lit)
    for layer, (col, hmin, hmax) in enumerate([((44, 22, 84), 120, 300), ((24, 12, 48), 60, 240)]):
        x = -10
        while x < W:
            bw = rng.randint(26, 60)
            top = H - rng.randint(hmin, hmax) - 120
            cd.rectangle([x, top, x + bw, H], fill=col)
            for wy in range(top + 6, H, 9):
                for wx in range(x + 4, x + bw - 4, 7):
                    if rng.random() < 0.18:
                        ld.rectangle([wx, wy, wx + 3, wy + 4], fill=rng.choice([(255, 60, 200), (60, 230, 255), (255, 210, 90), (160, 110, 255)]))
            x += bw + rng.randint(2, 10)
    img = Image.composite(city, img, city.convert("L").point(lambda v: 255 if v else 0))
    img = ImageChops.screen(img, blur(lit, 3))
    img = ImageChops.screen(img, lit)
    bb = Image.new("RGB", img.size, (0, 0, 0))
    bd = ImageDraw.Draw(bb)
    bd.rectangle([14, 150, 78, 250], fill=(30, 120, 160), outline=(90, 240, 255), width=2)
    bd.rectangle([316, 250, 372, 300], fill=(150, 20, 110), outline=(255, 90, 210), width=2)
    img = ImageChops.screen(img, blur(bb, 1))
    img = ImageChops.screen(img, blur(bb, 10))
    fog = ImageChops.multiply(ramp(img.size, "y", 280, 420), ImageOps.invert(ramp(img.size, "y", 420, 512)))
    img = glow(img, fog, (90, 40, 130), 0, 0.6)
    fig = Fig(cx=W / 2 - 18)
    m = fig.mask()
    chrome = vgrad([(0, (70, 70, 96)), (0.24, (225, 230, 245)), (0.34, (110, 110, 140)), (0.46, (40, 40, 64)),
                    (0.62, (230, 232, 250)), (0.7, (120, 120, 150)), (0.82, (60, 60, 90)), (1, (30, 30, 50))])
    chrome = ImageChops.multiply(chrome, hgrad([(0, (255, 150, 230)), (0.5, (240, 240, 255)), (1, (140, 230, 255))]))
    img.paste(chrome, (0, 0), m)
    img = glow(img, rim(m, 8, 0, 2), (255, 40, 190), 1.5)
    img = glow(img, rim(m, -8, 0, 2), (40, 230, 255), 1.5)
    circ = Image.new("L", img.size, 0)
    ccd = ImageDraw.Draw(circ)
    x0, y0 = fig.cx + 30, fig.hcy - 40
    ccd.line([(x0, y0), (x0 + 12, y0 + 10), (x0 + 12, y0 + 40), (x0 + 24, y0 + 52)], fill=255, width=2)
    ccd.ellipse([x0 + 21, y0 + 49, x0 + 28, y0 + 56], fill=255)
    hx, hy = fig.cx + fig.hx + 70, fig.hcy - 10
    for r, a0, a1 in [(44, 200, 340), (34, 20, 250), (24, 120, 400)]:
        ccd.arc([hx - r, hy - r, hx + r, hy + r], a0, a1, fill=255, width=2)
    for i in range(12):
        a = math.radians(i * 30)
        ccd.line([(hx + 48 * math.cos(a), hy + 48 * math.sin(a)), (hx + 54 * math.cos(a), hy + 54 * math.sin(a))], fill=255, width=1)
    for i, wbar in enumerate([50, 34, 42]):
        ccd.rectangle([hx - 30, hy + 64 + i * 8, hx - 30 + wbar, hy + 66 + i * 8], fill=255)
    img = glow(img, circ, (60, 240, 255), 4)
    fill(img, circ, (190, 250, 255))
    for y in range(0, H, 3):
        img.paste((0, 0, 0), (0, y, W, y + 1), Image.new("L", (W, 1), 40))
    return label(img, t["name"].upper(), face="DejaVuSansMono-Bold.ttf", size=32, color=(220, 252, 255),
                 glow_color=(40, 200, 255), glow_r=7, scrim=((8, 0, 20), 0.7, 130))


def r_elven_royalty(rng, t):
    img = vgrad([(0, (10, 34, 48)), (0.5, (18, 66, 66)), (1, (6, 22, 26))])
    moon = (300, 86)
    img = glow(img, ImageOps.invert(radial(img.size, moon, 150, 0.7)), (110, 160, 190), 0, 0.6)
    fill(img, ellipse_mask((moon[0] - 26, moon[1] - 26, moon[0] + 26, moon[1] + 26)), (226, 236, 240))
    for depth, (col, bl, n) in enumerate([((40, 90, 96), 4, 7), ((14, 40, 42), 1.5, 5)]):
        trees = Image.new("L", img.size, 0)
        td = ImageDraw.Draw(trees)
        for _ in range(n):
            x, wd = rng.randint(-10, W), rng.randint(10, 20) * (depth + 1)
            td.polygon([(x, -10), (x + wd, -10), (x + wd * 1.3, H), (x - wd * 0.3, H)], fill=255)
        fill(img, blur(trees, bl), col)
    beams = Image.new("L", img.size, 0)
    bd = ImageDraw.Draw(beams)
    for off in (0, 60, 130):
        bd.polygon([(W - 20 - off, -10), (W + 30 - off, -10), (140 - off, H), (80 - off, H)], fill=90)
    img = glow(img, blur(beams, 14), (120, 190, 200), 0, 0.45)
    fig = Fig(top=128)
    m = fig.mask(ears=True)
    robe = vgrad([(0, (22, 60, 52)), (1, (10, 30, 28))])
    img.paste(robe, (0, 0), m)
    img = glow(img, rim(m, -7, 3, 2.5), (190, 220, 240), 1.2)
    img = glow(img, rim(m, 5, 0, 2), (60, 120, 120), 1, 0.6)
    orn = Image.new("L", (W * SS, H * SS), 0)
    od = ImageDraw.Draw(orn)
    box = [(fig.cx - fig.hx - 2) * SS, (fig.top + 24) * SS, (fig.cx + fig.hx + 2) * SS, (fig.top + 110) * SS]
    od.arc(box, 198, 342, fill=255, width=4 * SS)
    gem = (fig.cx, fig.top + 24)
    od.polygon([((gem[0]) * SS, (gem[1] - 10) * SS), ((gem[0] + 7) * SS, gem[1] * SS),
                (gem[0] * SS, (gem[1] + 10) * SS), ((gem[0] - 7) * SS, gem[1] * SS)], fill=255)
    for sign in (-1, 1):
        pts = []
        for i in range(20):
            u = i / 19
            x = fig.cx + sign * (fig.nw + 8 + u * 70)
            y = fig.sh_top - 8 + u * 140
            pts.append((x * SS, y * SS))
        od.line(pts, fill=255, width=3 * SS)
        od.line([(x + sign * 10 * SS, y) for x, y in pts[3:]], fill=160, width=1 * SS)
    orn = orn.resize((W, H), Image.LANCZOS)
    img = glow(img, orn, (150, 200, 255), 3, 0.8)
    fill(img, orn, (214, 222, 236))
    img = glow(img, ellipse_mask((gem[0] - 4, gem[1] - 4, gem[0] + 4, gem[1] + 4)), (120, 200, 255), 6)
    motes = Image.new("L", img.size, 0)
    md = ImageDraw.Draw(motes)
    for _ in range(46):
        x, y, r = rng.uniform(0, W), rng.uniform(0, H - 40), rng.uniform(1, 3.2)
        md.ellipse([x - r, y - r, x + r, y + r], fill=255)
    img = glow(img, motes, (120, 210, 255), 5)
    img = glow(img, motes, (200, 240, 255), 0.8)
    img = vignette(img, 0.5)
    return label(img, t["name"], face="DejaVuSerif-Bold.ttf", size=32, color=(232, 240, 248),
                 glow_color=(70, 150, 220), glow_r=8, scrim=((2, 14, 18), 0.7, 140))


def r_astronaut(rng, t):
    img = vgrad([(0, (2, 3, 12)), (1, (8, 12, 32))])
    neb = blur(poly_mask(blob_points(rng, 90, 140, 120, 70, 0.4)), 30)
    img = glow(img, neb, (80, 30, 110), 0, 0.6)
    stars = Image.new("RGB", img.size, (0, 0, 0))
    sd = ImageDraw.Draw(stars)
    for _ in range(260):
        x, y, v = rng.randrange(W), rng.randrange(330), rng.randint(70, 255)
        sd.point((x, y), fill=(v, v, min(255, v + 20)))
    for _ in range(9):
        x, y = rng.randrange(W), rng.randrange(300)
        sd.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(255, 255, 255))
    img = ImageChops.screen(img, stars)
    img = ImageChops.screen(img, blur(stars, 2))
    ec, er = (W / 2 + 40, 930), 640
    earth_m = ellipse_mask((ec[0] - er, ec[1] - er, ec[0] + er, ec[1] + er))
    earth = Image.composite(Image.new("RGB", (W, H), (80, 160, 235)), Image.new("RGB", (W, H), (8, 26, 72)),
                            radial((W, H), ec, er, 6))
    ed = ImageDraw.Draw(earth)
    for _ in range(40):
        x, y = rng.uniform(-40, W + 40), rng.uniform(290, H)
        ed.ellipse([x - 40, y - 6, x + 40, y + 6], fill=(200, 220, 240))
    earth = blur(earth, 4)
    img.paste(earth, (0, 0), earth_m)
    atmo = ImageChops.subtract(dilate(earth_m, 4), earth_m)
    img = glow(img, atmo, (110, 200, 255), 5)
    img = glow(img, atmo, (180, 230, 255), 1.5)
    fig = Fig(top=112)
    m = fig.mask()
    fill(img, m, (22, 24, 34))
    img = glow(img, rim(m, 6, 0, 2), (120, 190, 255), 1, 0.7)
    suit_m = ImageChops.multiply(m, fig.below(fig.sh_top - 14, 4))
    suit = ImageChops.multiply(vgrad([(0, (245, 246, 250)), (1, (160, 166, 180))]),
                               hgrad([(0, (255, 255, 255)), (0.6, (220, 224, 232)), (1, (150, 156, 172))]))
    img.paste(suit, (0, 0), suit_m)
    img = glow(img, rim(suit_m, 7, 6, 3), (255, 210, 160), 1, 0.4)
    d = ImageDraw.Draw(img)
    rb = (fig.cx - 66, fig.sh_top - 28, fig.cx + 66, fig.sh_top + 20)
    d.ellipse(rb, outline=(120, 130, 150), width=11)
    d.ellipse((rb[0] + 3, rb[1] + 3, rb[2] - 3, rb[3] - 3), outline=(200, 208, 222), width=3)
    d.arc((fig.cx - 120, fig.sh_top + 30, fig.cx + 120, fig.sh_top + 200), 200, 340, fill=(170, 176, 190), width=2)
    px, py = fig.cx - 100, fig.sh_top + 72
    d.ellipse((px - 20, py - 20, px + 20, py + 20), fill=(30, 60, 150), outline=(240, 200, 60), width=3)
    d.polygon([(px, py - 12), (px + 4, py - 3), (px + 12, py), (px + 4, py + 3), (px, py + 12), (px - 4, py + 3), (px - 12, py), (px - 4, py - 3)],
              fill=(250, 250, 255))
    d.rectangle((fig.cx + 66, fig.sh_top + 64, fig.cx + 112, fig.sh_top + 76), fill=(200, 60, 50))
    img = grain(img, rng, 6)
    return label(img, t["name"].upper(), size=34, scrim=((0, 4, 16), 0.65, 120))


def r_seventies_film(rng, t):
    img = Image.new("RGB", (W, H), (246, 241, 228))
    pw, ph = W - 36, H - 36 - 72
    photo = Image.new("RGB", (pw, ph))
    d = ImageDraw.Draw(photo)
    x = 0
    while x < pw:
        sw = rng.randint(18, 34)
        c = rng.choice([(122, 72, 36), (104, 60, 30), (136, 82, 42), (96, 54, 28)])
        d.rectangle([x, 0, x + sw, ph], fill=c)
        for _ in range(5):
            gx = x + rng.uniform(2, sw - 2)
            d.line([(gx, 0), (gx + rng.uniform(-3, 3), ph)], fill=tuple(v - 14 for v in c), width=1)
        d.line([(x, 0), (x, ph)], fill=(60, 34, 18), width=2)
        x += sw
    photo = glow(photo, ImageOps.invert(radial(photo.size, (40, 40), 240, 0.8)), (150, 100, 40), 0, 0.8)
    fig = Fig(cx=pw / 2, top=96, s=0.92, size=(pw, ph))
    m = fig.mask(hair=(1.32, 1.12, -8))
    fill(photo, m, (66, 38, 24))
    face = ellipse_mask((fig.cx - fig.hx + 8, fig.top + fig.hy * 0.55, fig.cx + fig.hx - 8, fig.chin), photo.size)
    skin = Image.composite(Image.new("RGB", photo.size, (104, 64, 42)), Image.new("RGB", photo.size, (176, 118, 82)),
                           radial(photo.size, (fig.cx - 24, fig.hcy), 110, 1.0))
    photo.paste(skin, (0, 0), face)
    fill(photo, ImageChops.multiply(face, ImageOps.invert(fig.below(fig.top + fig.hy * 0.8, 4))), (66, 38, 24))
    shirt = ImageChops.multiply(m, fig.below(fig.sh_top - 6, 4))
    fill(photo, shirt, (196, 110, 44))
    pat = Image.new("L", photo.size, 0)
    pd = ImageDraw.Draw(pat)
    for row, yy in enumerate(range(int(fig.sh_top), ph, 18)):
        for xx in range(-9 if row % 2 else 0, pw, 18):
            pd.ellipse([xx - 5, yy - 5, xx + 5, yy + 5], fill=255)
            pd.ellipse([xx - 2, yy - 2, xx + 2, yy + 2], fill=0)
    fill(photo, ImageChops.multiply(pat, shirt), (240, 190, 90))
    collar = Image.new("L", photo.size, 0)
    cd = ImageDraw.Draw(collar)
    for sign in (-1, 1):
        cd.polygon([(fig.cx + sign * 4, fig.sh_top + 36), (fig.cx + sign * 38, fig.sh_top - 14),
                    (fig.cx + sign * 70, fig.sh_top + 4), (fig.cx + sign * 30, fig.sh_top + 90)], fill=255)
    collar = ImageChops.multiply(collar, m)
    fill(photo, collar, (244, 226, 190))
    v = ImageChops.subtract(poly_mask([(fig.cx - 20, fig.sh_top - 30), (fig.cx + 20, fig.sh_top - 30), (fig.cx, fig.sh_top + 56)], photo.size),
                            ImageOps.invert(shirt))
    fill(photo, v, (150, 90, 60))
    r, g, b = photo.split()
    photo = Image.merge("RGB", (r.point(lambda c: round(34 + c * 0.86)), g.point(lambda c: round(24 + c * 0.8)), b.point(lambda c: round(16 + c * 0.62))))
    leak = ImageOps.invert(radial(photo.size, (pw + 10, -10), 230, 0.9))
    photo = glow(photo, leak, (255, 80, 30), 0, 0.9)
    photo = blur(photo, 0.7)
    photo = grain(photo, rng, 22)
    photo = vignette(photo, 0.4)
    img.paste(photo, (18, 18))
    img = grain(img, rng, 5)
    d = ImageDraw.Draw(img)
    d.rectangle((17, 17, 18 + pw, 18 + ph), outline=(200, 192, 176), width=1)
    f = fitted_font("DejaVuSansCondensed-BoldOblique.ttf", t["name"], W - 80, 32)
    d.text((W / 2, H - 54), t["name"], font=f, fill=(44, 48, 92), anchor="mm")
    return img


def r_victorian_tintype(rng, t):
    img = Image.new("L", (W, H), 96)
    d = ImageDraw.Draw(img)
    for i in range(26, 0, -1):
        r = i * 16
        v = 70 + (i % 2) * 22 + i
        d.ellipse([W / 2 - r * 0.8 - 10, 190 - r, W / 2 + r * 0.8 - 10, 190 + r], outline=v, width=7)
    img = blur(img, 7)
    fig = Fig(top=120)
    m = fig.mask()
    fill(img, m, 28)
    face = ImageChops.multiply(m, ImageOps.invert(fig.below(fig.chin + 12, 8)))
    skin = Image.composite(Image.new("L", (W, H), 80), Image.new("L", (W, H), 198), radial((W, H), (fig.cx - 22, fig.hcy - 26), 120, 0.9))
    img.paste(skin, (0, 0), face)
    hair = ImageChops.multiply(fig.head_mask(3), ellipse_mask((fig.cx - fig.hx - 6, fig.top - 8, fig.cx + fig.hx + 6, fig.top + fig.hy * 0.85)))
    img.paste(36, (0, 0), hair)
    collar = poly_mask([(fig.cx - 38, fig.chin + 4), (fig.cx + 38, fig.chin + 4), (fig.cx + 44, fig.sh_top + 16), (fig.cx, fig.sh_top + 36), (fig.cx - 44, fig.sh_top + 16)])
    img.paste(205, (0, 0), ImageChops.multiply(collar, m))
    img.paste(24, (0, 0), poly_mask([(fig.cx - 10, fig.chin + 18), (fig.cx + 10, fig.chin + 18), (fig.cx + 6, fig.sh_top + 30), (fig.cx - 6, fig.sh_top + 30)]))
    sharp = img
    soft = blur(img, 5)
    img = Image.composite(soft, sharp, radial((W, H), (fig.cx, fig.hcy + 20), 230, 1.4))
    img = ImageChops.screen(img, scale_mask(ImageOps.invert(radial((W, H), (fig.cx - 20, fig.hcy - 10), 90, 1.2)), 0.15))
    marks = Image.new("L", (W, H), 0)
    md = ImageDraw.Draw(marks)
    for _ in range(30):
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        md.line([(x, y), (x + rng.uniform(-30, 30), y + rng.uniform(-60, 60))], fill=rng.randint(60, 150), width=1)
    for _ in range(90):
        x, y, r = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(0.5, 1.8)
        md.ellipse([x - r, y - r, x + r, y + r], fill=rng.randint(80, 200))
    img = ImageChops.screen(img, scale_mask(marks, 0.5))
    streak = blur(rect_mask((24, 60, 40, 420)), 10)
    img = ImageChops.screen(img, scale_mask(streak, 0.18))
    n = ImageOps.autocontrast(blur(noise(rng, (W, H)), 4))
    edge = Image.blend(rect_mask((14, 14, W - 15, H - 15), r=26), n, 0.18).point(lambda v: 255 if v > 150 else 0)
    edge = blur(edge, 8)
    img = ImageChops.multiply(img, edge)
    img = grain(img.convert("RGB"), rng, 10).convert("L")
    img = ImageOps.colorize(img, black=(12, 11, 8), mid=(104, 102, 84), white=(220, 218, 198))
    return label(img, t["name"], face="DejaVuSerif.ttf", size=30, color=(214, 210, 190), scrim=((0, 0, 0), 0.35, 100), y=H - 46)


def r_pop_art(rng, t):
    img = Image.new("RGB", (W, H))
    cells = [((255, 120, 0), (255, 60, 150), (40, 200, 210), (255, 236, 40)),
             ((0, 196, 214), (255, 226, 30), (255, 80, 40), (255, 60, 160)),
             ((255, 228, 0), (50, 70, 230), (230, 20, 120), (0, 210, 200)),
             ((232, 30, 126), (150, 232, 60), (0, 120, 200), (255, 150, 0))]
    cw, ch = W // 2, H // 2
    for i, (bg, face_c, shadow_c, hair_c) in enumerate(cells):
        cell = Image.new("RGB", (cw, ch), bg)
        dots = Image.new("L", (cw, ch), 0)
        dd = ImageDraw.Draw(dots)
        for row, y in enumerate(range(0, ch + 8, 8)):
            for x in range(-4 if row % 2 else 0, cw + 8, 8):
                dd.ellipse([x - 1.6, y - 1.6, x + 1.6, y + 1.6], fill=255)
        cell = glow(cell, dots, (60, 60, 60), 0, 0.6)
        fig = Fig(cx=cw / 2, top=40, s=0.56, size=(cw, ch))
        m = fig.mask()
        off = (rng.choice([-3, 3]), rng.choice([-2, 2]))
        fill(cell, dilate(m, 2), (10, 10, 10))
        fm = shift(m, *off)
        fill(cell, fm, face_c)
        sh = ImageChops.multiply(fm, poly_mask([(cw / 2 + 8, 0), (cw, 0), (cw, ch), (cw / 2 - 30, ch)], (cw, ch)))
        fill(cell, sh, shadow_c)
        hair = ImageChops.multiply(shift(fig.head_mask(2), *off), ellipse_mask(
            (fig.cx - fig.hx - 6, fig.top - 6, fig.cx + fig.hx + 6, fig.top + fig.hy * 0.8), (cw, ch)))
        fill(cell, hair, hair_c)
        ring = ImageChops.subtract(m, erode(m, 2))
        fill(cell, ring, (10, 10, 10))
        img.paste(cell, ((i % 2) * cw, (i // 2) * ch))
    d = ImageDraw.Draw(img)
    d.line([(cw, 0), (cw, H)], fill=(250, 250, 250), width=4)
    d.line([(0, ch), (W, ch)], fill=(250, 250, 250), width=4)
    d.rectangle((0, H - 66, W, H), fill=(12, 12, 12))
    d.rectangle((0, H - 70, W, H - 66), fill=(255, 226, 30))
    return label(img, t["name"].upper(), size=38, color=(255, 255, 255), scrim=None, shadow=False, y=H - 33)


def r_vaporwave(rng, t):
    horizon = 300
    img = vgrad([(0, (44, 18, 96)), (0.3, (150, 50, 150)), (0.52, (255, 120, 180)), (horizon / H, (255, 196, 170)), (1, (255, 196, 170))])
    sun_c, sun_r = (W / 2, 196), 112
    sun = ImageChops.multiply(ellipse_mask((sun_c[0] - sun_r, sun_c[1] - sun_r, sun_c[0] + sun_r, sun_c[1] + sun_r)),
                              ImageOps.invert(ramp(img.size, "y", horizon - 1, horizon)))
    gaps = Image.new("L", img.size, 255)
    gd = ImageDraw.Draw(gaps)
    y, gh = sun_c[1] + 6, 2
    while y < horizon:
        gd.rectangle([0, y, W, y + gh], fill=0)
        y += 14
        gh += 1.6
    sun = ImageChops.multiply(sun, gaps)
    img = glow(img, ImageOps.invert(radial(img.size, sun_c, 200, 0.8)), (255, 120, 120), 0, 0.4)
    img.paste(vgrad([(0, (255, 240, 120)), (0.35, (255, 230, 110)), (0.62, (255, 120, 160)), (1, (220, 60, 170))]), (0, 0), sun)
    floor = vgrad([(0, (40, 10, 70)), (1, (16, 4, 34))])
    img.paste(floor, (0, 0), ramp(img.size, "y", horizon - 0.5, horizon + 0.5))
    grid = Image.new("L", img.size, 0)
    gd = ImageDraw.Draw(grid)
    vp = (W / 2, horizon)
    for i in range(-14, 15):
        gd.line([vp, (W / 2 + i * 60, H + 40)], fill=255, width=2)
    for k in range(1, 14):
        yy = horizon + 3 * k * k
        if yy < H:
            gd.line([(0, yy), (W, yy)], fill=255, width=2)
    gd.line([(0, horizon), (W, horizon)], fill=255, width=2)
    img = glow(img, grid, (255, 40, 220), 4)
    fill(img, grid, (255, 110, 240))
    palms = Image.new("L", img.size, 0)
    pd = ImageDraw.Draw(palms)
    for bx, lean, top_y in [(34, 26, 110), (W - 30, -30, 140)]:
        pts = [(bx + lean * (1 - (1 - u) ** 2), horizon + 10 - (horizon + 10 - top_y) * u) for u in [i / 12 for i in range(13)]]
        pd.line(pts, fill=255, width=9, joint="curve")
        tx, ty = pts[-1]
        for a in range(0, 360, 40):
            ar = math.radians(a + 10)
            ex, ey = tx + 62 * math.cos(ar), ty + 30 * math.sin(ar) + 22
            pd.polygon([(tx, ty), (ex, ey), ((tx + ex) / 2 + 6, (ty + ey) / 2 + 12)], fill=255)
    fill(img, palms, (58, 14, 84))
    fig = Fig(top=150, s=0.88)
    m = fig.mask()
    fill(img, shift(m, -6, 0), (40, 240, 255))
    fill(img, shift(m, 6, 0), (255, 40, 200))
    body = vgrad([(0, (120, 236, 230)), (0.5, (176, 150, 255)), (1, (255, 150, 220))])
    img.paste(body, (0, 0), m)
    img = glow(img, rim(m, 0, 6, 2), (255, 255, 255), 1, 0.6)
    for y0, hgt, dx in [(rng.randint(120, 200), 8, 10), (rng.randint(330, 380), 5, -14), (rng.randint(240, 300), 3, 7)]:
        band = img.crop((0, y0, W, y0 + hgt))
        img.paste(band, (dx, y0))
    for y in range(0, H, 3):
        img.paste((0, 0, 0), (0, y, W, y + 1), Image.new("L", (W, 1), 34))
    return label(img, t["name"].upper(), face="DejaVuSans-BoldOblique.ttf", size=36, color=(255, 255, 255),
                 chroma=(((40, 240, 255), (255, 40, 200)), 3), scrim=((30, 0, 50), 0.55, 120))


def r_generic(rng, t):
    """Fallback for templates without a dedicated renderer."""
    h = seed_for(t["id"])
    c1 = tuple(60 + (h >> s) % 160 for s in (0, 8, 16))
    c2 = tuple(20 + (h >> s) % 90 for s in (4, 12, 20))
    img = vgrad([(0, c1), (1, c2)])
    shapes = Image.new("RGB", img.size, (0, 0, 0))
    d = ImageDraw.Draw(shapes)
    for _ in range(14):
        x, y, r = rng.randint(0, W), rng.randint(0, H), rng.randint(20, 90)
        d.ellipse([x - r, y - r, x + r, y + r], fill=tuple(v // 3 for v in c1))
    img = ImageChops.screen(img, blur(shapes, 12))
    m = Fig().mask()
    fill(img, m, tuple(v // 3 for v in c2))
    img = glow(img, rim(m, -6, 4, 2), (255, 255, 255), 1, 0.6)
    return label(img, t["name"])


RENDERERS = {
    "neon-noir": r_neon_noir,
    "studio-headshot": r_studio_headshot,
    "golden-hour": r_golden_hour,
    "anime-hero": r_anime_hero,
    "comic-book": r_comic_book,
    "pixel-art": r_pixel_art,
    "renaissance-oil": r_renaissance_oil,
    "watercolour-wash": r_watercolour_wash,
    "charcoal-sketch": r_charcoal_sketch,
    "cyberpunk-chrome": r_cyberpunk_chrome,
    "elven-royalty": r_elven_royalty,
    "astronaut": r_astronaut,
    "seventies-film": r_seventies_film,
    "victorian-tintype": r_victorian_tintype,
    "pop-art": r_pop_art,
    "vaporwave": r_vaporwave,
}


def encode_jpeg(img: Image.Image) -> tuple[bytes, int]:
    """JPEG bytes at quality ~80, stepping down only if needed to stay under MAX_BYTES."""
    for q in range(JPEG_QUALITY, 49, -4):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q, optimize=True)  # no EXIF/ICC written
        if buf.tell() < MAX_BYTES:
            return buf.getvalue(), q
    return buf.getvalue(), q


def main(argv: list[str]) -> int:
    with open(CATALOGUE, encoding="utf-8") as f:
        cat = yaml.safe_load(f)
    errs = validate(cat)
    if errs:
        for e in errs:
            print(f"catalogue.yaml: {e}", file=sys.stderr)
        return 1
    if "--check" in argv:
        print(f"catalogue.yaml OK: {len(cat['categories'])} categories, {len(cat['templates'])} templates")
        return 0
    only = {a for a in argv if not a.startswith("-")}
    unknown = only - {t["id"] for t in cat["templates"]}
    if unknown:
        print(f"unknown template id(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    for t in cat["templates"]:
        if only and t["id"] not in only:
            continue
        rng = random.Random(seed_for(t["id"]))
        img = RENDERERS.get(t["id"], r_generic)(rng, t).convert("RGB")
        assert img.size == (W, H), (t["id"], img.size)
        data, q = encode_jpeg(img)
        out = os.path.join(HERE, t["preview"])
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "wb") as f:
            f.write(data)
        note = "" if t["id"] in RENDERERS else " (generic design: add a renderer)"
        print(f"{t['preview']}: {len(data) / 1024:.1f} KB, q={q}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
