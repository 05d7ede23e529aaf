"""Scene graphs of coloured shapes: sampling, rendering and language.

Why: the embedded profile needs image-text data whose truth is known, so that
captions, VQA answers, NLVR2 labels and entailment labels are all derived from
one scene graph and the tasks are learnable but not trivial.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond")
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 190),
    "white": (245, 245, 245),
}
SIZES = {"small": 0.13, "large": 0.24}
# A 3x3 layout: cell centres as fractions of the image side.
COLUMNS = {"left": 0.2, "center": 0.5, "right": 0.8}
ROWS = {"top": 0.2, "middle": 0.5, "bottom": 0.8}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Properties that an image of shapes cannot decide: the source of "neutral" hypotheses.
UNDECIDABLE = (
    "is made of wood",
    "is made of metal",
    "was drawn by a child",
    "is about to move",
    "is very heavy",
    "belongs to a museum",
    "is warm to the touch",
)


@dataclass(frozen=True)
class Thing:
    shape: str
    color: str
    size: str
    column: str
    row: str

    @property
    def phrase(self) -> str:
        return f"{self.size} {self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    things: tuple[Thing, ...]
    background: tuple[int, int, int]

    def count(self, shape: str | None = None, color: str | None = None) -> int:
        return sum(
            1 for t in self.things if (shape is None or t.shape == shape) and (color is None or t.color == color)
        )

    def unique(self, shape: str) -> Thing | None:
        found = [t for t in self.things if t.shape == shape]
        return found[0] if len(found) == 1 else None


def sample_scene(rng: random.Random, max_objects: int) -> Scene:
    """Sample 1..max_objects things in distinct cells of the 3x3 layout."""
    n = rng.randint(1, max_objects)
    cells = rng.sample([(c, r) for c in COLUMNS for r in ROWS], n)
    things = tuple(
        Thing(rng.choice(SHAPES), rng.choice(list(COLORS)), rng.choice(list(SIZES)), column, row)
        for column, row in cells
    )
    grey = rng.randint(60, 120)
    background = (grey + rng.randint(-15, 15), grey + rng.randint(-15, 15), grey + rng.randint(-15, 15))
    return Scene(things, background)


def draw_thing(draw: ImageDraw.ImageDraw, thing: Thing, side: int, cx: float, cy: float) -> None:
    radius = SIZES[thing.size] * side / 2 * 1.6
    x, y = cx * side, cy * side
    fill = COLORS[thing.color]
    if thing.shape == "circle":
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)
    elif thing.shape == "square":
        draw.rectangle([x - radius, y - radius, x + radius, y + radius], fill=fill)
    elif thing.shape == "triangle":
        draw.polygon([(x, y - radius), (x - radius, y + radius), (x + radius, y + radius)], fill=fill)
    else:  # diamond
        draw.polygon([(x, y - radius), (x + radius, y), (x, y + radius), (x - radius, y)], fill=fill)


def render(scene: Scene, side: int, rng: random.Random) -> Image.Image:
    """Render a scene; a little positional jitter so that no two images are pixel-equal."""
    image = Image.new("RGB", (side, side), scene.background)
    draw = ImageDraw.Draw(image)
    for thing in scene.things:
        jx, jy = rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04)
        draw_thing(draw, thing, side, COLUMNS[thing.column] + jx, ROWS[thing.row] + jy)
    return image


RELATIONS = ("left of", "right of", "above", "below")


def relation_holds(a: Thing, b: Thing, asked: str) -> bool:
    """Whether ``a`` is ``asked`` (one of RELATIONS) of ``b``, on either axis of the layout."""
    ca, cb = list(COLUMNS).index(a.column), list(COLUMNS).index(b.column)
    ra, rb = list(ROWS).index(a.row), list(ROWS).index(b.row)
    return {"left of": ca < cb, "right of": ca > cb, "above": ra < rb, "below": ra > rb}[asked]


def relation(a: Thing, b: Thing) -> str | None:
    """Spatial relation of a to b, or None when they share a cell line in both axes."""
    ca, cb = list(COLUMNS).index(a.column), list(COLUMNS).index(b.column)
    ra, rb = list(ROWS).index(a.row), list(ROWS).index(b.row)
    if ca != cb:
        return "left of" if ca < cb else "right of"
    if ra != rb:
        return "above" if ra < rb else "below"
    return None


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene, rng: random.Random) -> str:
    """One caption, from one of several templates that each stay true of the scene."""
    things = list(scene.things)
    a = rng.choice(things)
    templates = ["list", "position", "count"]
    if len(things) > 1:
        templates += ["relation", "relation"]
    kind = rng.choice(templates)
    if kind == "relation":
        b = rng.choice([t for t in things if t is not a])
        rel = relation(a, b)
        return f"{_article(a.size)} {a.phrase} {rel} {_article(b.size)} {b.phrase}"
    if kind == "position":
        where = f"{a.row} {a.column}" if (a.row, a.column) != ("middle", "center") else "center"
        return f"{_article(a.size)} {a.phrase} in the {where} of the picture"
    if kind == "count":
        n = len(things)
        noun = "shape" if n == 1 else "shapes"
        colors = sorted({t.color for t in things})
        return f"{NUMBER_WORDS[n]} {noun} in {' and '.join(colors)}"
    order = rng.sample(things, len(things))
    return " and ".join(f"{_article(t.size)} {t.phrase}" for t in order)


def false_statement(scene: Scene, rng: random.Random, max_objects: int, objects_only: bool = False) -> str:
    """A statement about the scene that is false (contradictions and negatives).

    It uses the templates of ``true_statement`` with the same word distribution (a thing's
    size and shape with a colour absent for that shape; a count within 1..max_objects), so
    the words alone do not tell a false statement from a true one.
    """
    a = rng.choice(scene.things)
    other_colors = [c for c in COLORS if scene.count(a.shape, c) == 0]
    if other_colors and (objects_only or rng.random() < 0.5):
        return f"there is {_article(a.size)} {a.size} {rng.choice(other_colors)} {a.shape}"
    wrong = [n for n in range(1, max_objects + 1) if n != len(scene.things)] or [len(scene.things) + 1]
    n = rng.choice(wrong)
    return f"there {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} {'shape' if n == 1 else 'shapes'}"


def true_statement(scene: Scene, rng: random.Random, objects_only: bool = False) -> str:
    a = rng.choice(scene.things)
    if objects_only or rng.random() < 0.5:
        return f"there is {_article(a.size)} {a.phrase}"
    n = len(scene.things)
    return f"there {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} {'shape' if n == 1 else 'shapes'}"


def undecidable(statement: str, rng: random.Random) -> str:
    """``there is a red circle`` -> ``there is a red circle that is made of wood``.

    True of the image plus undecidable: neutral. False of the image: still a contradiction.
    Why both: if only neutral hypotheses carried the clause, text alone would find them.
    """
    return f"{statement} that {rng.choice(UNDECIDABLE)}"
