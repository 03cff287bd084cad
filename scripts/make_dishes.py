#!/usr/bin/python3
"""Synthetic "Italian dishes": drawn plates with an English and an Italian caption.

    scripts/make_dishes.py --out DIR --count N --seed S [--lang en|it|both] [--split train|eval]
                           [--layout folders|flat] [--size PX] [--format jpg|png]

Four categories, each drawn with PIL from a small set of attributes:

* pizza            1 or 2 toppings of mushrooms, ham, salami, olives, basil (on tomato and
                   mozzarella): "a pizza with ham and olives"                          (15 captions)
* first course     spaghetti / penne / lasagne / risotto with tomato sauce, pesto, cream sauce
                   or ragù: "penne with pesto"                                        (16 captions)
* second course    steak / fish / chicken with potatoes, salad or carrots:
                   "a steak with potatoes"                                             (9 captions)
* dessert          tiramisù, a slice of chocolate / strawberry / lemon cake, panna cotta,
                   chocolate / strawberry / pistachio gelato: "a slice of lemon cake"  (8 captions)

The caption names every attribute that the picture shows and nothing else (48 distinct English
captions), so images that share a caption really are the same dish: `mmsearch eval`'s
identical-caption rule then measures what a model can honestly learn. Everything else is
nuisance: plate colour and rim, tablecloth colour and pattern, position, scale, rotation, the
number and placement of toppings, lighting gradient, brightness and pixel noise.

Output (the captions format `mmsearch index` reads):
    DIR/<category folder>/dish-00000.jpg      (--layout folders, default; flat: DIR/dish-00000.jpg)
    DIR/captions.csv        file,caption,category       (English; Italian with --lang it)
    DIR/captions_it.csv     the same rows in Italian     (--lang both)
    DIR/attributes.jsonl    one object per image: file, category, kind, attributes, captions

Image i depends only on (seed, split, i): any seed gives a valid set from the same
distribution, a larger --count extends a smaller one, and the train and eval splits of one seed
never share an image. Deterministic: the same arguments give byte-identical files.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import random
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CATEGORIES = ["pizza", "first course", "second course", "dessert"]
FOLDERS = {"pizza": "pizza", "first course": "first_course", "second course": "second_course",
           "dessert": "dessert"}

PIZZA_TOPPINGS = ["mushrooms", "ham", "salami", "olives", "basil"]
PASTAS = ["spaghetti", "penne", "lasagne", "risotto"]
SAUCES = ["tomato sauce", "pesto", "cream sauce", "ragù"]
MAINS = ["steak", "fish", "chicken"]
SIDES = ["potatoes", "salad", "carrots"]
DESSERTS = ["tiramisù", "cake", "panna cotta", "gelato"]
CAKE_FLAVOURS = ["chocolate", "strawberry", "lemon"]
GELATO_FLAVOURS = ["chocolate", "strawberry", "pistachio"]

IT = {
    "mushrooms": "funghi", "ham": "prosciutto", "salami": "salame", "olives": "olive", "basil": "basilico",
    "tomato sauce": "al pomodoro", "pesto": "al pesto", "cream sauce": "alla panna", "ragù": "al ragù",
    "steak": "una bistecca", "fish": "un pesce", "chicken": "un pollo",
    "potatoes": "patate", "salad": "insalata", "carrots": "carote",
    "chocolate": "al cioccolato", "strawberry": "alla fragola", "lemon": "al limone",
    "pistachio": "al pistacchio",
}
GELATO_IT = {"chocolate": "gelato al cioccolato", "strawberry": "gelato alla fragola",
             "pistachio": "gelato al pistacchio"}


# ------------------------------------------------------------------------------------------------
# Attributes and captions


def sample_dish(rng: random.Random) -> dict:
    """A dish: category, kind and attributes (uniform category, then uniform attributes)."""
    cat = rng.choice(CATEGORIES)
    if cat == "pizza":
        n = rng.choice([1, 2])
        tops = sorted(rng.sample(range(len(PIZZA_TOPPINGS)), n))
        return {"category": cat, "kind": "pizza", "toppings": [PIZZA_TOPPINGS[t] for t in tops]}
    if cat == "first course":
        return {"category": cat, "kind": rng.choice(PASTAS), "sauce": rng.choice(SAUCES)}
    if cat == "second course":
        return {"category": cat, "kind": rng.choice(MAINS), "side": rng.choice(SIDES)}
    kind = rng.choice(DESSERTS)
    d = {"category": cat, "kind": kind}
    if kind == "cake":
        d["flavour"] = rng.choice(CAKE_FLAVOURS)
    elif kind == "gelato":
        d["flavour"] = rng.choice(GELATO_FLAVOURS)
    return d


def caption_en(d: dict) -> str:
    k = d["kind"]
    if k == "pizza":
        return "a pizza with " + " and ".join(d["toppings"])
    if d["category"] == "first course":
        return f"{k} with {d['sauce']}"
    if d["category"] == "second course":
        return f"a {k} with {d['side']}"
    if k == "cake":
        return f"a slice of {d['flavour']} cake"
    if k == "gelato":
        return f"{d['flavour']} gelato"
    return f"a {k}"


def caption_it(d: dict) -> str:
    k = d["kind"]
    if k == "pizza":
        return "una pizza con " + " e ".join(IT[t] for t in d["toppings"])
    if d["category"] == "first course":
        return f"{k} {IT[d['sauce']]}"
    if d["category"] == "second course":
        return f"{IT[k]} con {IT[d['side']]}"
    if k == "cake":
        return f"una fetta di torta {IT[d['flavour']]}"
    if k == "gelato":
        return GELATO_IT[d["flavour"]]
    return f"una {k}" if k != "tiramisù" else "un tiramisù"


def caption_variants(d: dict) -> List[str]:
    """Other phrasings of the same dish (English and Italian), for training the text side to
    accept natural queries ("a chocolate cake", "penne al pesto"). The first is the caption."""
    en, it = caption_en(d), caption_it(d)
    k = d["kind"]
    out = [en]
    if k == "pizza":
        t = d["toppings"]
        out += ["pizza with " + " and ".join(t)]
        if len(t) == 2:
            out += [f"a pizza with {t[1]} and {t[0]}"]
    elif d["category"] == "first course":
        out += [f"a plate of {k} with {d['sauce']}"]
        if d["sauce"] == "ragù":
            out += [f"{k} with meat sauce"]
    elif d["category"] == "second course":
        out += [f"{k} with {d['side']}"]
    elif k == "cake":
        out += [f"a {d['flavour']} cake", f"{d['flavour']} cake"]
    elif k == "gelato":
        out += [f"a cup of {d['flavour']} gelato", f"{d['flavour']} ice cream"]
    else:
        out += [k]
    out += [it]
    return out


def all_dishes() -> List[dict]:
    """Every distinct dish (one per English caption)."""
    out = []
    for i in range(len(PIZZA_TOPPINGS)):
        out.append({"category": "pizza", "kind": "pizza", "toppings": [PIZZA_TOPPINGS[i]]})
        for j in range(i + 1, len(PIZZA_TOPPINGS)):
            out.append({"category": "pizza", "kind": "pizza", "toppings": [PIZZA_TOPPINGS[i], PIZZA_TOPPINGS[j]]})
    for p in PASTAS:
        for s in SAUCES:
            out.append({"category": "first course", "kind": p, "sauce": s})
    for m in MAINS:
        for s in SIDES:
            out.append({"category": "second course", "kind": m, "side": s})
    for k in DESSERTS:
        if k == "cake":
            out += [{"category": "dessert", "kind": k, "flavour": f} for f in CAKE_FLAVOURS]
        elif k == "gelato":
            out += [{"category": "dessert", "kind": k, "flavour": f} for f in GELATO_FLAVOURS]
        else:
            out.append({"category": "dessert", "kind": k})
    return out


# ------------------------------------------------------------------------------------------------
# Drawing (on a 2x canvas, downsampled for anti-aliasing)

SS = 2  # supersampling


def jit(rng: random.Random, rgb: Tuple[int, int, int], amount: int = 14) -> Tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)


def ellipse(dr: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, fill, outline=None, width=1):
    dr.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill, outline=outline, width=width)


def rot_poly(cx: float, cy: float, pts: List[Tuple[float, float]], ang: float) -> List[Tuple[float, float]]:
    c, s = math.cos(ang), math.sin(ang)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def scatter(rng: random.Random, n: int, radius: float, min_dist: float) -> List[Tuple[float, float]]:
    pts: List[Tuple[float, float]] = []
    tries = 0
    while len(pts) < n and tries < n * 40:
        tries += 1
        r = radius * math.sqrt(rng.random())
        a = rng.random() * 2 * math.pi
        p = (r * math.cos(a), r * math.sin(a))
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= min_dist ** 2 for q in pts):
            pts.append(p)
    return pts


SAUCE_RGB = {"tomato sauce": (200, 38, 28), "pesto": (70, 140, 45), "cream sauce": (238, 228, 196),
             "ragù": (120, 50, 25)}
PASTA_RGB = (236, 200, 110)


def draw_pizza(dr, rng, cx, cy, R, d):
    ellipse(dr, cx, cy, R, R, jit(rng, (214, 160, 90)))                       # crust
    ellipse(dr, cx, cy, R * 0.86, R * 0.86, jit(rng, (205, 50, 35)))           # tomato
    for (x, y) in scatter(rng, rng.randint(5, 8), R * 0.62, R * 0.22):       # mozzarella
        ellipse(dr, cx + x, cy + y, R * rng.uniform(0.1, 0.15), R * rng.uniform(0.08, 0.13),
                jit(rng, (250, 244, 225), 6))
    tops = d["toppings"]
    per = {1: (8, 11), 2: (5, 7)}[len(tops)]
    pts = scatter(rng, per[1] * len(tops) + 2, R * 0.7, R * 0.16)
    rng.shuffle(pts)
    k = 0
    for t in tops:
        n = rng.randint(*per)
        for (x, y) in pts[k:k + n]:
            draw_topping(dr, rng, cx + x, cy + y, R, t)
        k += n


def draw_topping(dr, rng, x, y, R, t):
    a = rng.random() * 2 * math.pi
    if t == "mushrooms":
        r = R * 0.11
        dr.pieslice([x - r, y - r, x + r, y + r], 180 + math.degrees(a), 360 + math.degrees(a),
                    fill=jit(rng, (160, 120, 85), 10))
        stem = rot_poly(x, y, [(-r * 0.3, 0), (r * 0.3, 0), (r * 0.3, r * 0.8), (-r * 0.3, r * 0.8)], a)
        dr.polygon(stem, fill=jit(rng, (215, 195, 165), 8))
    elif t == "ham":
        s = R * 0.12
        dr.polygon(rot_poly(x, y, [(-s, -s * 0.8), (s, -s), (s * 0.9, s), (-s, s * 0.8)], a),
                   fill=jit(rng, (240, 150, 160), 10))
    elif t == "salami":
        r = R * 0.12
        ellipse(dr, x, y, r, r, jit(rng, (150, 20, 35), 10))
        for _ in range(3):
            ellipse(dr, x + rng.uniform(-r, r) * 0.55, y + rng.uniform(-r, r) * 0.55, r * 0.14, r * 0.14,
                    (240, 220, 210))
    elif t == "olives":
        r = R * 0.075
        ellipse(dr, x, y, r, r, jit(rng, (25, 25, 25), 8))
        ellipse(dr, x, y, r * 0.4, r * 0.4, jit(rng, (205, 50, 35)))
    elif t == "basil":
        L, W = R * 0.14, R * 0.06
        leaf = [(-L, 0), (-L * 0.3, -W), (L * 0.5, -W * 0.8), (L, 0), (L * 0.5, W * 0.8), (-L * 0.3, W)]
        dr.polygon(rot_poly(x, y, leaf, a), fill=jit(rng, (40, 150, 50), 12))


def draw_first(dr, rng, cx, cy, R, d):
    kind, sauce = d["kind"], d["sauce"]
    sc = SAUCE_RGB[sauce]
    if kind == "spaghetti":
        ellipse(dr, cx, cy, R * 0.8, R * 0.75, jit(rng, (225, 188, 100), 8))
        for _ in range(60):
            x0, y0 = rng.uniform(-0.6, 0.6) * R, rng.uniform(-0.55, 0.55) * R
            r = rng.uniform(0.15, 0.35) * R
            a0 = rng.uniform(0, 360)
            dr.arc([cx + x0 - r, cy + y0 - r, cx + x0 + r, cy + y0 + r], a0, a0 + rng.uniform(120, 260),
                   fill=jit(rng, PASTA_RGB, 10), width=max(3, int(R * 0.05)))
        ellipse(dr, cx + rng.uniform(-.1, .1) * R, cy + rng.uniform(-.1, .1) * R, R * 0.3, R * 0.27, jit(rng, sc))
    elif kind == "penne":
        ellipse(dr, cx, cy, R * 0.78, R * 0.74, jit(rng, sc, 8))
        for (x, y) in scatter(rng, 16, R * 0.6, R * 0.17):
            a = rng.random() * math.pi
            L, W = R * 0.17, R * 0.065
            dr.polygon(rot_poly(cx + x, cy + y, [(-L, -W), (L - W, -W), (L, W), (-L + W, W)], a),
                       fill=jit(rng, PASTA_RGB, 10), outline=(190, 150, 70))
        for (x, y) in scatter(rng, 7, R * 0.55, R * 0.2):
            ellipse(dr, cx + x, cy + y, R * 0.1, R * 0.08, jit(rng, sc))
    elif kind == "lasagne":
        a = rng.uniform(-0.4, 0.4)
        w, h = R * 0.75, R * 0.6
        for i in range(5):  # layers, bottom to top
            col = PASTA_RGB if i % 2 == 0 else sc
            y0 = -h + i * (2 * h / 5)
            dr.polygon(rot_poly(cx, cy, [(-w, y0), (w, y0), (w, y0 + 2 * h / 5), (-w, y0 + 2 * h / 5)], a),
                       fill=jit(rng, col, 8))
        dr.polygon(rot_poly(cx, cy, [(-w, -h), (w, -h), (w, -h + h * 0.25), (-w, -h + h * 0.25)], a),
                   fill=jit(rng, (200, 120, 50), 10))  # browned top edge
    else:  # risotto
        base = tuple(int(0.55 * s + 0.45 * c) for s, c in zip(sc, (245, 240, 225)))
        ellipse(dr, cx, cy, R * 0.78, R * 0.72, jit(rng, base, 8))
        for _ in range(160):
            x, y = rng.uniform(-0.7, 0.7) * R, rng.uniform(-0.65, 0.65) * R
            if (x / 0.72) ** 2 + (y / 0.66) ** 2 > R * R:
                continue
            ellipse(dr, cx + x, cy + y, R * 0.035, R * 0.022, jit(rng, (250, 246, 230), 8))
        for (x, y) in scatter(rng, 8, R * 0.5, R * 0.15):
            ellipse(dr, cx + x, cy + y, R * 0.07, R * 0.07, jit(rng, sc))
    if sauce == "ragù":  # meat chunks
        for (x, y) in scatter(rng, 9, R * 0.45, R * 0.08):
            ellipse(dr, cx + x, cy + y, R * 0.045, R * 0.045, jit(rng, (80, 35, 20)))
    if sauce == "pesto":
        for (x, y) in scatter(rng, 4, R * 0.4, R * 0.15):
            ellipse(dr, cx + x, cy + y, R * 0.05, R * 0.03, (230, 220, 160))  # pine nuts


def draw_second(dr, rng, cx, cy, R, d):
    a = rng.uniform(0, 2 * math.pi)
    mx, my = rot_poly(0, 0, [(-R * 0.28, 0)], a)[0]
    side = d["side"]
    # side on the other half of the plate
    sx, sy = rot_poly(cx, cy, [(R * 0.55, 0)], a)[0]
    if side == "potatoes":
        for (x, y) in scatter(rng, 7, R * 0.3, R * 0.15):
            ellipse(dr, sx + x, sy + y, R * 0.11, R * 0.09, jit(rng, (235, 195, 80), 12), outline=(190, 140, 50))
    elif side == "salad":
        for (x, y) in scatter(rng, 8, R * 0.26, R * 0.1):
            b = rng.random() * math.pi
            L, W = R * 0.16, R * 0.085
            dr.polygon(rot_poly(sx + x, sy + y, [(-L, 0), (0, -W), (L, 0), (0, W)], b),
                       fill=jit(rng, (120, 200, 70), 15))
        for (x, y) in scatter(rng, 3, R * 0.2, R * 0.1):
            ellipse(dr, sx + x, sy + y, R * 0.05, R * 0.05, jit(rng, (220, 40, 40)))
    else:  # carrots
        for (x, y) in scatter(rng, 8, R * 0.24, R * 0.09):
            b = rng.random() * math.pi
            L, W = R * 0.17, R * 0.045
            dr.polygon(rot_poly(sx + x, sy + y, [(-L, -W), (L, -W), (L, W), (-L, W)], b),
                       fill=jit(rng, (240, 120, 20), 12))
    px, py = cx + mx, cy + my
    k = d["kind"]
    if k == "steak":
        w, h = R * 0.55, R * 0.4
        poly = [(-w, -h * 0.8), (-w * 0.6, -h), (w * 0.8, -h), (w, -h * 0.4), (w * 0.9, h), (-w * 0.8, h * 0.9)]
        b = a + math.pi / 2 + rng.uniform(-0.5, 0.5)
        dr.polygon(rot_poly(px, py, poly, b), fill=jit(rng, (120, 60, 35), 10))
        for i in range(-2, 3):
            x = i * w * 0.35
            dr.line(rot_poly(px, py, [(x - h * 0.5, -h * 0.75), (x + h * 0.5, h * 0.75)], b),
                    fill=(50, 25, 15), width=max(2, int(R * 0.04)))
    elif k == "fish":
        b = a + math.pi / 2 + rng.uniform(-0.4, 0.4)
        L, W = R * 0.6, R * 0.25
        body = [(L * math.cos(t), W * math.sin(t)) for t in [i * 2 * math.pi / 24 for i in range(24)]]
        dr.polygon(rot_poly(px, py, body, b), fill=jit(rng, (170, 180, 190), 10))
        dr.polygon(rot_poly(px, py, [(-L * 0.85, 0), (-L * 1.3, -W * 1.0), (-L * 1.3, W * 1.0)], b),
                   fill=jit(rng, (150, 160, 175), 10))
        ex, ey = rot_poly(px, py, [(L * 0.65, -W * 0.25)], b)[0]
        ellipse(dr, ex, ey, R * 0.04, R * 0.04, (20, 20, 20))
        for i in range(3):
            dr.line(rot_poly(px, py, [(-L * 0.4 + i * L * 0.3, -W * 0.6), (-L * 0.3 + i * L * 0.3, W * 0.6)], b),
                    fill=(120, 125, 135), width=2)
        dr.polygon(rot_poly(px, py, [(L * 0.2, W * 1.05), (L * 0.4, W * 1.05), (L * 0.3, W * 1.5)], b),
                   fill=(250, 235, 60))  # lemon wedge
    else:  # chicken leg
        b = a + math.pi / 2 + rng.uniform(-0.6, 0.6)
        L = R * 0.42
        dr.line(rot_poly(px, py, [(0, 0), (L * 1.35, 0)], b), fill=(245, 240, 225), width=max(3, int(R * 0.09)))
        ex, ey = rot_poly(px, py, [(L * 1.4, 0)], b)[0]
        ellipse(dr, ex, ey, R * 0.06, R * 0.06, (245, 240, 225))
        body = [(L * 0.9 * math.cos(t) - L * 0.15, L * 0.55 * math.sin(t)) for t in
                [i * 2 * math.pi / 24 for i in range(24)]]
        dr.polygon(rot_poly(px, py, body, b), fill=jit(rng, (205, 140, 50), 12))
        for _ in range(5):
            x, y = rng.uniform(-0.6, 0.4) * L, rng.uniform(-0.3, 0.3) * L
            ex, ey = rot_poly(px, py, [(x, y)], b)[0]
            ellipse(dr, ex, ey, R * 0.03, R * 0.03, (160, 90, 30))


CAKE_RGB = {"chocolate": (85, 45, 25), "strawberry": (240, 140, 165), "lemon": (245, 230, 120)}
GELATO_RGB = {"chocolate": (105, 60, 35), "strawberry": (245, 150, 170), "pistachio": (170, 205, 120)}


def draw_dessert(dr, rng, cx, cy, R, d):
    k = d["kind"]
    a = rng.uniform(0, 2 * math.pi)
    if k == "tiramisù":
        w, h = R * 0.5, R * 0.42
        dr.polygon(rot_poly(cx, cy, [(-w, -h), (w, -h), (w, h), (-w, h)], a), fill=jit(rng, (245, 232, 205), 6))
        dr.polygon(rot_poly(cx, cy, [(-w * 0.88, -h * 0.85), (w * 0.88, -h * 0.85), (w * 0.88, h * 0.85),
                                     (-w * 0.88, h * 0.85)], a), fill=jit(rng, (110, 70, 45), 8))
        for _ in range(40):  # cocoa dust
            x, y = rng.uniform(-0.85, 0.85) * w, rng.uniform(-0.8, 0.8) * h
            ex, ey = rot_poly(cx, cy, [(x, y)], a)[0]
            ellipse(dr, ex, ey, R * 0.02, R * 0.02, jit(rng, (70, 40, 25), 10))
    elif k == "cake":
        col = CAKE_RGB[d["flavour"]]
        L = R * 1.05
        tri = [(-L * 0.5, -L * 0.35), (L * 0.6, 0), (-L * 0.5, L * 0.35)]
        dr.polygon(rot_poly(cx, cy, tri, a), fill=jit(rng, col, 8))
        dr.polygon(rot_poly(cx, cy, [(-L * 0.5, -L * 0.35), (-L * 0.42, -L * 0.35), (-L * 0.42, L * 0.35),
                                     (-L * 0.5, L * 0.35)], a), fill=jit(rng, (250, 240, 225), 5))  # icing edge
        layer = tuple(int(c * 0.75) for c in col)
        dr.line(rot_poly(cx, cy, [(-L * 0.3, -L * 0.24), (-L * 0.3, L * 0.24)], a), fill=layer, width=3)
        tx, ty = rot_poly(cx, cy, [(-L * 0.3, 0)], a)[0]
        top = {"chocolate": (60, 30, 15), "strawberry": (210, 25, 45), "lemon": (250, 250, 200)}[d["flavour"]]
        ellipse(dr, tx, ty, R * 0.08, R * 0.08, top)
    elif k == "panna cotta":
        r = R * rng.uniform(0.45, 0.55)
        ellipse(dr, cx, cy, r, r, jit(rng, (250, 248, 238), 4), outline=(225, 220, 205), width=3)
        ellipse(dr, cx + rng.uniform(-.1, .1) * r, cy + rng.uniform(-.1, .1) * r, r * 0.5, r * 0.45,
                jit(rng, (175, 20, 45), 10))
        for (x, y) in scatter(rng, 3, r * 0.35, r * 0.2):
            ellipse(dr, cx + x, cy + y, r * 0.09, r * 0.09, (110, 10, 30))
    else:  # gelato in a cup
        ellipse(dr, cx, cy, R * 0.7, R * 0.7, jit(rng, (200, 225, 240), 10), outline=(150, 170, 190), width=3)
        col = GELATO_RGB[d["flavour"]]
        n = rng.randint(1, 3)
        for (x, y) in scatter(rng, n, R * 0.25, R * 0.3):
            ellipse(dr, cx + x, cy + y, R * 0.3, R * 0.3, jit(rng, col, 8))
            ellipse(dr, cx + x - R * 0.08, cy + y - R * 0.08, R * 0.06, R * 0.05,
                    tuple(min(255, c + 40) for c in col))
        wx, wy = rot_poly(cx, cy, [(R * 0.45, 0)], a)[0]  # wafer
        dr.polygon(rot_poly(wx, wy, [(-R * 0.12, -R * 0.05), (R * 0.12, -R * 0.05), (R * 0.12, R * 0.05),
                                     (-R * 0.12, R * 0.05)], a + 0.7), fill=(225, 180, 110))


PLATES = [(250, 250, 250), (240, 236, 225), (205, 225, 240), (220, 220, 225), (60, 60, 65), (190, 215, 190),
          (235, 205, 175)]
CLOTHS = [(180, 40, 40), (40, 70, 140), (120, 90, 60), (210, 200, 170), (70, 110, 70), (150, 150, 155),
          (230, 225, 215), (90, 60, 100)]


def render(d: dict, rng: random.Random, size: int = 128) -> Image.Image:
    S = size * SS
    cloth = jit(rng, rng.choice(CLOTHS), 20)
    img = Image.new("RGB", (S, S), cloth)
    dr = ImageDraw.Draw(img)
    pattern = rng.choice(["plain", "check", "stripes"])
    if pattern != "plain":
        alt = tuple(int(c * 0.5 + 255 * 0.5) for c in cloth)
        step = rng.randint(S // 10, S // 5)
        for i in range(0, S, step):
            if pattern == "stripes":
                dr.rectangle([i, 0, i + step // 2, S], fill=alt)
            else:
                for j in range(0, S, step):
                    if ((i // step) + (j // step)) % 2 == 0:
                        dr.rectangle([i, j, i + step - 1, j + step - 1], fill=alt)
    # plate + food on a transparent layer, rotated and pasted
    scale = rng.uniform(0.78, 1.0)
    layer = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    ld = ImageDraw.Draw(layer)
    c = S / 2
    PR = S * 0.46 * scale
    plate = jit(rng, rng.choice(PLATES), 10)
    ellipse(ld, c, c, PR, PR, plate + (255,))
    rim = tuple(int(v * 0.88) for v in plate)
    ld.ellipse([c - PR * 0.8, c - PR * 0.8, c + PR * 0.8, c + PR * 0.8], outline=rim + (255,), width=max(2, S // 90))
    R = PR * 0.86
    cat = d["category"]
    if cat == "pizza":
        draw_pizza(ld, rng, c, c, R, d)
    elif cat == "first course":
        draw_first(ld, rng, c, c, R, d)
    elif cat == "second course":
        draw_second(ld, rng, c, c, R, d)
    else:
        draw_dessert(ld, rng, c, c, R, d)
    layer = layer.rotate(rng.uniform(0, 360), resample=Image.BICUBIC)
    off = int(S * 0.5 * (1 - scale)) + S // 20
    dx, dy = rng.randint(-off, off), rng.randint(-off, off)
    img.paste(layer, (dx, dy), layer)
    img = img.resize((size, size), Image.LANCZOS)
    # lighting: brightness, a linear gradient, slight blur, noise
    bright = rng.uniform(0.78, 1.15)
    gdir = rng.uniform(0, 2 * math.pi)
    gamp = rng.uniform(0.0, 0.25)
    grad = Image.linear_gradient("L").resize((size, size)).rotate(math.degrees(gdir))
    lut_hi = [int(min(255, v * bright * (1 + gamp / 2))) for v in range(256)]
    lut_lo = [int(min(255, v * bright * (1 - gamp / 2))) for v in range(256)]
    img = Image.composite(img.point(lut_hi * 3), img.point(lut_lo * 3), grad)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    sigma = rng.uniform(0, 10)
    if sigma > 1:
        nrng = np.random.default_rng(rng.getrandbits(64))
        arr = np.asarray(img, dtype=np.float32) + nrng.normal(0.0, sigma, (size, size, 3)).astype(np.float32)
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    return img


# ------------------------------------------------------------------------------------------------
# Sets


def image_rng(seed: int, split: str, i: int) -> random.Random:
    return random.Random(f"mmsearch-dishes/{split}/{seed}/{i}")


def make_item(seed: int, split: str, i: int, size: int = 128) -> Tuple[dict, Image.Image]:
    rng = image_rng(seed, split, i)
    d = sample_dish(rng)
    return d, render(d, rng, size)


def encode(img: Image.Image, fmt: str) -> bytes:
    b = io.BytesIO()
    if fmt == "jpg":
        img.save(b, "JPEG", quality=90)
    else:
        img.save(b, "PNG", optimize=False)
    return b.getvalue()


def write_set(out: Path, count: int, seed: int, lang: str = "en", split: str = "train",
              layout: str = "folders", size: int = 128, fmt: str = "jpg") -> List[dict]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        d, img = make_item(seed, split, i, size)
        name = f"dish-{i:05d}.{fmt}"
        rel = f"{FOLDERS[d['category']]}/{name}" if layout == "folders" else name
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(encode(img, fmt))
        rows.append({"file": rel, "category": d["category"], "kind": d["kind"],
                     "attributes": {k: v for k, v in d.items() if k not in ("category", "kind")},
                     "caption_en": caption_en(d), "caption_it": caption_it(d)})

    def write_csv(path: Path, key: str):
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["file", "caption", "category"])
            for r in rows:
                w.writerow([r["file"], r[key], r["category"]])

    if lang in ("en", "both"):
        write_csv(out / "captions.csv", "caption_en")
    if lang == "it":
        write_csv(out / "captions.csv", "caption_it")
    if lang == "both":
        write_csv(out / "captions_it.csv", "caption_it")
    with open(out / "attributes.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--count", type=int, required=True, help="number of images")
    ap.add_argument("--seed", type=int, required=True, help="seed: any value gives a valid set")
    ap.add_argument("--lang", choices=["en", "it", "both"], default="en",
                    help="captions.csv language; both: captions.csv English + captions_it.csv Italian")
    ap.add_argument("--split", choices=["train", "eval"], default="train",
                    help="train and eval splits of one seed share no image")
    ap.add_argument("--layout", choices=["folders", "flat"], default="folders",
                    help="folders: one sub-folder per category (default); flat: all in --out")
    ap.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    ap.add_argument("--format", choices=["jpg", "png"], default="jpg")
    a = ap.parse_args(argv)
    if a.count < 1:
        ap.error("--count must be at least 1")
    if a.size < 32:
        ap.error("--size must be at least 32")
    rows = write_set(Path(a.out), a.count, a.seed, a.lang, a.split, a.layout, a.size, a.format)
    cats: Dict[str, int] = {}
    for r in rows:
        cats[r["category"]] = cats.get(r["category"], 0) + 1
    print(f"make_dishes: {len(rows)} images in {a.out} ("
          + ", ".join(f"{k} {v}" for k, v in sorted(cats.items())) + ")", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
