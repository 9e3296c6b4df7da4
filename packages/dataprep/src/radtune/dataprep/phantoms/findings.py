"""What a phantom study shows: the sampled findings (the ground truth) and how they map to dataset labels.

Every label the layouts write comes from a `Phantom` record, never from parsing the generated report.

Mapping of drawn findings to the 14 CheXpert observations (and to NIH ChestX-ray14 class names):

| drawn                         | CheXpert observation(s)            | NIH class       |
|-------------------------------|------------------------------------|-----------------|
| cardiomegaly (CTR > 0.5)      | Cardiomegaly                       | Cardiomegaly    |
| pleural effusion (any side)   | Pleural Effusion                   | Effusion        |
| pneumothorax                  | Pneumothorax                       | Pneumothorax    |
| nodule (< 3 cm)               | Lung Lesion                        | Nodule          |
| mass (>= 3 cm)                | Lung Lesion                        | Mass            |
| consolidation                 | Consolidation + Lung Opacity       | Consolidation   |
| ET tube / central line / PM   | Support Devices                    | (none)          |
| nothing but devices           | No Finding                         | No Finding      |

Absent findings are 0.0 where the report negates them ("No pneumothorax.") and blank where it is
silent, as the CheXpert labeler would have it; the generator never hedges, so -1.0 never occurs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The keys of `prevalences`: the marginal probability that a study shows each finding.
# Independent draws with these defaults leave about 43% of studies free of pathology
# (0.8 * 0.8 * 0.9 * (1 - 0.07 - 0.05) * 0.85); support devices alone do not make a study abnormal.
DEFAULT_PREVALENCES: dict[str, float] = {
    "cardiomegaly": 0.20,
    "pleural_effusion": 0.20,
    "pneumothorax": 0.10,
    "nodule": 0.07,
    "mass": 0.05,
    "consolidation": 0.15,
    "support_devices": 0.15,
}

# The findings a model must be able to see (the learnability targets), each a function of a `Phantom`.
TARGETS = ("cardiomegaly", "pleural_effusion", "pneumothorax", "nodule_or_mass", "consolidation", "support_devices")

SIDES = ("right", "left")
SIZES = ("small", "moderate", "large")
LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe")
DEVICES = ("endotracheal tube", "central venous catheter", "pacemaker")
CENTRAL_LINE_ROUTES = ("right internal jugular", "left subclavian")


@dataclass(frozen=True)
class Phantom:
    """The ground truth of one phantom study: exactly what `draw_phantom` puts on the image.

    Sides are the patient's (a right-sided finding appears on the left of the image, as on a real film).
    """

    ctr: float  # cardiothoracic ratio as drawn: heart width / internal thoracic width
    effusion: str | None = None  # "right" | "left" | "bilateral"
    effusion_size: str | None = None  # "small" | "moderate" | "large"
    pneumothorax: str | None = None  # "right" | "left"
    pneumothorax_size: str | None = None
    lesion: str | None = None  # "nodule" | "mass"
    lesion_size_mm: int | None = None
    lesion_lobe: str | None = None
    consolidation: str | None = None  # lobe
    devices: tuple[str, ...] = ()
    central_line_route: str | None = None
    view: str = "PA"  # "PA" | "AP"
    extras: dict = field(default_factory=dict, compare=False)

    @property
    def cardiomegaly(self) -> bool:
        return self.ctr > 0.5

    @property
    def is_normal(self) -> bool:
        """No pathology drawn (support devices alone still count as normal)."""
        return not (self.cardiomegaly or self.effusion or self.pneumothorax or self.lesion or self.consolidation)

    def as_dict(self) -> dict:
        """The record as plain JSON-able values (the ground-truth file's `findings`)."""
        record = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "extras"}
        record["devices"] = list(self.devices)
        return {**record, **self.extras}

    def targets(self) -> dict[str, bool]:
        """The learnability targets: each drawn finding, present or absent."""
        return {
            "cardiomegaly": self.cardiomegaly,
            "pleural_effusion": self.effusion is not None,
            "pneumothorax": self.pneumothorax is not None,
            "nodule_or_mass": self.lesion is not None,
            "consolidation": self.consolidation is not None,
            "support_devices": bool(self.devices),
        }

    def positive_observations(self) -> set[str]:
        """The CheXpert observations that are positive for what was drawn."""
        positive = set()
        if self.cardiomegaly:
            positive.add("Cardiomegaly")
        if self.effusion:
            positive.add("Pleural Effusion")
        if self.pneumothorax:
            positive.add("Pneumothorax")
        if self.lesion:
            positive.add("Lung Lesion")
        if self.consolidation:
            positive.update(("Consolidation", "Lung Opacity"))
        if self.devices:
            positive.add("Support Devices")
        if self.is_normal:
            positive.add("No Finding")
        return positive

    def nih_labels(self) -> str:
        """The `Finding Labels` cell of NIH's Data_Entry_2017.csv."""
        names = []
        if self.cardiomegaly:
            names.append("Cardiomegaly")
        if self.consolidation:
            names.append("Consolidation")
        if self.effusion:
            names.append("Effusion")
        if self.lesion == "mass":
            names.append("Mass")
        if self.lesion == "nodule":
            names.append("Nodule")
        if self.pneumothorax:
            names.append("Pneumothorax")
        return "|".join(names) or "No Finding"


def validate_prevalences(prevalences: dict[str, float] | None) -> dict[str, float]:
    """The defaults updated with `prevalences`; unknown keys or values outside [0, 1] raise `ValueError`."""
    merged = dict(DEFAULT_PREVALENCES)
    for key, value in (prevalences or {}).items():
        if key not in DEFAULT_PREVALENCES:
            raise ValueError(f"prevalences: unknown finding {key!r}; expected some of {sorted(DEFAULT_PREVALENCES)}")
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"prevalences[{key!r}] must be a number between 0 and 1, got {value!r}")
        merged[key] = float(value)
    if merged["nodule"] + merged["mass"] > 1.0:
        raise ValueError("prevalences: nodule + mass must not exceed 1 (a study shows at most one lesion)")
    return merged


def sample_phantom(rng, prevalences: dict[str, float]) -> Phantom:
    """Draw the findings of one study from `rng` (a `numpy.random.Generator`)."""
    draws = rng.random(8)
    cardiomegaly = draws[0] < prevalences["cardiomegaly"]
    ctr = float(rng.uniform(0.55, 0.68) if cardiomegaly else rng.uniform(0.38, 0.47))

    effusion = effusion_size = None
    if draws[1] < prevalences["pleural_effusion"]:
        effusion = str(rng.choice(("right", "left", "bilateral"), p=(0.35, 0.3, 0.35)))
        effusion_size = str(rng.choice(SIZES, p=(0.45, 0.4, 0.15)))

    pneumothorax = pneumothorax_size = None
    if draws[2] < prevalences["pneumothorax"]:
        pneumothorax = str(rng.choice(SIDES))
        pneumothorax_size = str(rng.choice(SIZES, p=(0.45, 0.4, 0.15)))

    lesion = lesion_size_mm = lesion_lobe = None
    if draws[3] < prevalences["nodule"]:
        lesion, lesion_size_mm = "nodule", int(rng.integers(12, 29))
    elif draws[3] < prevalences["nodule"] + prevalences["mass"]:
        lesion, lesion_size_mm = "mass", int(rng.integers(35, 71))
    if lesion:
        lesion_lobe = str(rng.choice(LOBES))

    consolidation = str(rng.choice(LOBES)) if draws[4] < prevalences["consolidation"] else None

    devices: tuple[str, ...] = ()
    route = None
    if draws[5] < prevalences["support_devices"]:
        chosen = rng.random(3) < (0.5, 0.6, 0.35)
        if not chosen.any():
            chosen[int(rng.integers(0, 3))] = True
        devices = tuple(name for name, keep in zip(DEVICES, chosen, strict=True) if keep)
        if "central venous catheter" in devices:
            route = str(rng.choice(CENTRAL_LINE_ROUTES))

    # Intubated and lined patients are imaged at the bedside.
    view = "AP" if ("endotracheal tube" in devices or draws[6] < 0.25) else "PA"
    return Phantom(
        ctr=round(ctr, 3),
        effusion=effusion,
        effusion_size=effusion_size,
        pneumothorax=pneumothorax,
        pneumothorax_size=pneumothorax_size,
        lesion=lesion,
        lesion_size_mm=lesion_size_mm,
        lesion_lobe=lesion_lobe,
        consolidation=consolidation,
        devices=devices,
        central_line_route=route,
        view=view,
    )
