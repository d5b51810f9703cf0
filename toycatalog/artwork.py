"""Lyrics and cover images: the two non-audio modalities, each leaning on genre and mood.

Both carry a learnable but imperfect signal: lyrics draw most words from their moods' and genre's word
banks and the rest from everyday words; covers take palette from genre and mood and shapes from genre,
with random jitter in every choice.
"""

import colorsys

import numpy as np
from PIL import Image, ImageDraw

# (nouns, verbs, adjectives) per mood and per genre.
_WORDS = {
    "happy": ("sunshine morning smile summer party daylight song friends",
              "dance laugh shine sing jump celebrate", "golden bright sweet lucky sunny warm"),
    "sad": ("tears rain goodbye winter ashes memory letter silence",
            "cry fade lose miss fall leave", "lonely empty grey broken cold distant"),
    "energetic": ("fire engine thunder rush speed lightning heartbeat crowd",
                  "run burn race shout jump ignite", "wild electric loud fierce restless fast"),
    "calm": ("river meadow breeze cloud ocean candle lake feather",
             "breathe drift rest float wander listen", "quiet slow gentle soft still peaceful"),
    "dark": ("shadow night grave raven abyss smoke void blood",
             "haunt bleed crawl sink drown hunt", "black hollow cursed bitter frozen wicked"),
    "romantic": ("heart kiss rose lover moonlight promise embrace darling",
                 "hold love touch stay dream hold", "tender sweet close dear true velvet"),
    "folk": ("mountain cabin whiskey porch valley railroad creek harvest",
             "ramble plow roam carry pray", "dusty old wooden humble green"),
    "rock": ("highway guitar rebel engine city radio garage jukebox",
             "drive break roll scream", "restless loud young faded"),
    "metal": ("iron steel throne storm war skull chains doom",
              "crush conquer rage destroy", "eternal molten savage infernal"),
    "electronic": ("neon signal pulse circuit machine laser satellite system",
                   "glitch flash loop sync", "digital synthetic chrome binary"),
    "jazz": ("midnight saxophone cigarette avenue cocktail club blues moon",
             "swing croon sway linger", "smoky blue smooth late"),
    "classical": ("aria cathedral light spirit glory heaven choir grace",
                  "rise praise ascend sing", "holy eternal pure serene"),
    "hiphop": ("street block mic hustle crew rhyme corner money",
               "flow grind rise spit", "real fresh hungry raw"),
    "pop": ("baby tonight forever party heart summer phone mirror",
            "dance want call feel", "perfect crazy pretty shiny"),
}
_BANKS = {k: tuple(part.split() for part in v) for k, v in _WORDS.items()}
_EVERYDAY = (["time", "road", "home", "day", "world", "door", "way", "name"],
             ["know", "see", "go", "come", "take", "wait"], ["new", "long", "little", "same", "other"])
_LINES = (
    "I {v} the {a} {n}", "{n} of {n2}, {v} with me", "we {v} through the {a} {n}", "oh {a} {n}",
    "you {v} like a {n}", "every {n} is {a}", "don't {v} the {n} tonight", "in the {a} {n} we {v}",
    "{a} {n}, {a2} {n2}", "let the {n} {v}",
)
# Base hue per genre (0..1) and a drawing style.
_COVER_HUE = {"folk": 0.09, "rock": 0.0, "metal": 0.0, "electronic": 0.75, "jazz": 0.6, "classical": 0.12,
              "hiphop": 0.13, "pop": 0.9}
_MOOD_SHIFT = {  # (hue shift, saturation factor, value factor)
    "happy": (0.04, 1.2, 1.15), "sad": (0.55, 0.5, 0.75), "energetic": (0.0, 1.4, 1.1),
    "calm": (0.4, 0.55, 1.1), "dark": (0.0, 0.7, 0.35), "romantic": (0.93, 1.0, 1.0),
}


def write_lyrics(genres: list[str], moods: list[str], rng: np.random.Generator) -> str:
    """A few verses and a repeated chorus; ~70 % of content words come from the mood and genre banks."""
    themed = [_BANKS[m] for m in moods] + [_BANKS[g] for g in genres]

    def word(pos: int) -> str:
        bank = themed[rng.integers(len(themed))] if rng.random() < 0.7 else _EVERYDAY
        return str(rng.choice(bank[pos]))

    def line() -> str:
        text = str(rng.choice(_LINES)).format(n=word(0), n2=word(0), v=word(1), a=word(2), a2=word(2))
        return text[0].upper() + text[1:]

    chorus = [line() for _ in range(int(rng.integers(2, 5)))]
    parts = []
    for _ in range(int(rng.integers(2, 4))):
        parts.append("\n".join(line() for _ in range(4)))
        parts.append("\n".join(chorus))
    return "\n\n".join(parts) + "\n"


def _palette(genres: list[str], moods: list[str], rng: np.random.Generator) -> list[tuple[int, int, int]]:
    hue = _COVER_HUE[genres[0]] + rng.normal(0, 0.04)
    sat, val = (0.25, 0.25) if genres[0] == "metal" else (0.65, 0.8)
    for m in moods:
        shift, s, v = _MOOD_SHIFT[m]
        hue += 0.3 * ((shift + 0.5) % 1.0 - 0.5)
        sat, val = sat * s, val * v
    colors = []
    for dh, ds, dv in ((0, 1, 1), (0.08, 0.8, 0.7), (0.5, 1, 1.1), (0.04, 0.4, 1.3)):
        r, g, b = colorsys.hsv_to_rgb((hue + dh) % 1.0, float(np.clip(sat * ds, 0, 1)),
                                      float(np.clip(val * dv + rng.normal(0, 0.05), 0, 1)))
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return colors


def draw_cover(genres: list[str], moods: list[str], size: int, rng: np.random.Generator) -> Image.Image:
    """A square RGB cover: gradient background in the genre/mood palette, shapes in the genre's style."""
    base, second, accent, light = _palette(genres, moods, rng)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    pixels = (1 - ramp) * np.array(base) + ramp * np.array(second)
    img = Image.fromarray(np.broadcast_to(pixels, (size, size, 3)).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    s = size
    style = genres[0]

    def point() -> tuple[int, int]:
        return int(rng.integers(s)), int(rng.integers(s))

    if style == "folk":  # rolling hills and leaves
        for k in range(3):
            y = int(s * (0.55 + 0.12 * k))
            xs = np.linspace(0, s, 8)
            ys = y + rng.normal(0, s * 0.04, 8)
            outline = [*zip(xs.tolist(), ys.tolist(), strict=True), (s, s), (0, s)]
            draw.polygon(outline, fill=second if k % 2 else accent)
        for _ in range(int(rng.integers(4, 10))):
            x, y = point()
            draw.ellipse((x, y, x + s // 12, y + s // 25), fill=light)
    elif style in ("rock", "hiphop"):  # bold bars and blocks
        for _ in range(int(rng.integers(3, 7))):
            x, y = point()
            w = int(rng.integers(s // 10, s // 2))
            draw.rectangle((x, y, x + w, y + s // 8), fill=accent if rng.random() < 0.5 else light)
    elif style == "metal":  # jagged spikes
        for _ in range(int(rng.integers(5, 12))):
            x = int(rng.integers(s))
            tip = (x + int(rng.normal(0, s * 0.05)), int(rng.integers(s // 5, s)))
            draw.polygon([(x - s // 20, s), (x + s // 20, s), tip], fill=accent)
    elif style == "electronic":  # neon grid and rings
        step = max(8, s // int(rng.integers(6, 12)))
        for k in range(0, s, step):
            draw.line((0, k, s, k), fill=accent, width=1)
            draw.line((k, 0, k, s), fill=accent, width=1)
        cx, cy = point()
        for r in range(s // 10, s, s // 8):
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=light, width=2)
    elif style == "jazz":  # overlapping rectangles and one circle
        for _ in range(4):
            x, y = point()
            fill = accent if rng.random() < 0.5 else light
            draw.rectangle((x // 2, y // 2, x // 2 + s // 3, y // 2 + s // 4), fill=fill)
        x, y = point()
        draw.ellipse((x - s // 8, y - s // 8, x + s // 8, y + s // 8), fill=second)
    elif style == "classical":  # a frame and an ornament
        m = s // 10
        draw.rectangle((m, m, s - m, s - m), outline=light, width=max(2, s // 60))
        draw.ellipse((s // 3, s // 3, 2 * s // 3, 2 * s // 3), outline=accent, width=max(2, s // 50))
    else:  # pop: bubbles
        for _ in range(int(rng.integers(4, 10))):
            x, y = point()
            r = int(rng.integers(s // 20, s // 5))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=light if rng.random() < 0.5 else accent)
    return img
