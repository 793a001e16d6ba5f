"""Domain randomization: resample environment parameters (attributes, MuJoCo model fields, setters) at every reset."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import gymnasium as gym
import numpy as np
from gymnasium.core import ActType, ObsType

__all__ = ["AttributeTarget", "CallableTarget", "DomainRandomization", "MujocoTarget", "ParameterSpec"]

Distribution = Literal["uniform", "log_uniform", "normal", "bernoulli"]
Operation = Literal["absolute", "scale", "add"]
_DISTRIBUTIONS = ("uniform", "log_uniform", "normal", "bernoulli")
_OPERATIONS = ("absolute", "scale", "add")
# Mixed into the reset seed so the wrapper's stream differs from the inner env's own ``np_random`` stream
_SEED_TAG = 0x44_52


class _Accessor:
    """A target bound to one env: reads and writes its value as a float64 array, writes back in the original type."""

    def __init__(self, read: Callable[[], Any], write: Callable[[Any], None], needs_set_const: bool = False):
        self._read = read
        self._write = write
        self.needs_set_const = needs_set_const
        # Python scalars (floats, ints, bools such as LunarLander's `enable_wind`) are written back in their own type
        self.kind = type(read())

    def read(self) -> np.ndarray:
        return np.array(self._read(), dtype=np.float64)

    def write(self, value: np.ndarray) -> None:
        if issubclass(self.kind, (bool, np.bool_)):
            self._write(bool(np.asarray(value).item() >= 0.5))
        elif issubclass(self.kind, (int, np.integer)):
            self._write(round(float(np.asarray(value).item())))
        elif issubclass(self.kind, (float, np.floating)):
            self._write(float(np.asarray(value).item()))
        else:
            self._write(value)


def _public_names(obj: Any) -> list[str]:
    return sorted(name for name in vars(obj) if not name.startswith("__")) if hasattr(obj, "__dict__") else []


@dataclass(frozen=True)
class AttributeTarget:
    """
    An attribute of the unwrapped env, by dotted path (e.g. ``"gravity"``, ``"_healthy_reward"``, ``"model.opt.wind"``).

    :param path: dotted attribute path from ``env.unwrapped``
    :param index: for array attributes, the element(s) to write (a numpy index); None: the whole array
    """

    path: str
    index: int | tuple[int, ...] | None = None

    def bind(self, env: gym.Env) -> _Accessor:
        """Resolve the path on ``env.unwrapped``; unknown names raise a ValueError listing the valid ones."""
        parts = self.path.split(".")
        owner: Any = env.unwrapped
        for depth, name in enumerate(parts):
            if not hasattr(owner, name):
                where = ".".join(parts[:depth]) or "env.unwrapped"
                raise ValueError(
                    f"AttributeTarget: {type(env.unwrapped).__name__} has no attribute '{'.'.join(parts[: depth + 1])}'. "
                    f"Attributes of '{where}': {_public_names(owner)}"
                )
            if depth < len(parts) - 1:
                owner = getattr(owner, name)
        leaf = parts[-1]
        current = getattr(owner, leaf)
        if self.index is not None or isinstance(current, np.ndarray):
            array = np.asarray(current)
            if not isinstance(current, np.ndarray):
                raise ValueError(f"AttributeTarget: '{self.path}' is not an array, it cannot take index={self.index}")
            index = slice(None) if self.index is None else self.index
            try:
                array[index]
            except IndexError as error:
                raise ValueError(
                    f"AttributeTarget: index {self.index} is out of range for '{self.path}' of shape {array.shape}"
                ) from error

            def write_array(value: Any) -> None:
                # In place (MuJoCo fields are views into C memory), fetched anew in case the env rebinds the attribute
                getattr(owner, leaf)[index] = value

            return _Accessor(lambda: getattr(owner, leaf)[index].copy(), write_array)
        if not isinstance(current, (bool, int, float, np.floating, np.integer, np.bool_)):
            raise ValueError(f"AttributeTarget: '{self.path}' holds a {type(current).__name__}, expected a number or an array")
        return _Accessor(lambda: getattr(owner, leaf), lambda value: setattr(owner, leaf, value))


# MuJoCo model fields this wrapper knows how to address by name: field -> (object type, needs mj_setConst)
_MUJOCO_FIELDS: dict[str, tuple[str, bool]] = {
    "body_mass": ("body", True),
    "body_inertia": ("body", True),
    "geom_friction": ("geom", False),
    "dof_damping": ("joint", False),
    "dof_armature": ("joint", True),
    "dof_frictionloss": ("joint", False),
    "jnt_stiffness": ("joint", False),
    "actuator_gear": ("actuator", False),
    "opt.gravity": ("none", False),
    "opt.wind": ("none", False),
    "opt.density": ("none", False),
    "opt.viscosity": ("none", False),
}


@dataclass(frozen=True)
class MujocoTarget:
    """
    A field of a MuJoCo env's ``model``, selected by body/geom/joint/actuator name.

    ``body_mass``, ``body_inertia`` and ``dof_armature`` are followed by ``mujoco.mj_setConst`` (the wrapper keeps the
    simulation state intact). MuJoCo combines two geoms' friction with the *max*: Walker2d-v5's feet (1.9) dominate the
    floor (0.7), so randomizing the floor alone changes nothing; ``names=None`` addresses every geom.

    :param field: one of ``body_mass``, ``body_inertia``, ``geom_friction``, ``dof_damping``, ``dof_armature``,
        ``dof_frictionloss``, ``jnt_stiffness``, ``actuator_gear``, ``opt.gravity``, ``opt.wind``, ``opt.density``,
        ``opt.viscosity``
    :param names: the body/geom/joint/actuator name(s) (joints select their dofs for ``dof_*`` fields); None: all rows
    :param column: the column of 2-D fields (e.g. 0: sliding friction of ``geom_friction``, 0: ``actuator_gear``'s
        gear ratio, 2: vertical ``opt.gravity``); None: all columns
    """

    field: str
    names: str | tuple[str, ...] | None = None
    column: int | None = None

    def bind(self, env: gym.Env) -> _Accessor:
        """Resolve names to rows of ``env.unwrapped.model``; unknown names raise a ValueError listing the valid ones."""
        import mujoco  # optional dependency: only MuJoCo targets need it

        if self.field not in _MUJOCO_FIELDS:
            raise ValueError(f"MujocoTarget: unknown field '{self.field}', expected one of {sorted(_MUJOCO_FIELDS)}")
        model = getattr(env.unwrapped, "model", None)
        data = getattr(env.unwrapped, "data", None)
        if not isinstance(model, mujoco.MjModel) or not isinstance(data, mujoco.MjData):
            raise ValueError(f"MujocoTarget: {type(env.unwrapped).__name__} is not a MuJoCo env (no `model`/`data`)")
        object_type, needs_set_const = _MUJOCO_FIELDS[self.field]
        if self.field.startswith("opt."):
            name = self.field[4:]
            if not isinstance(getattr(model.opt, name), np.ndarray):
                # Scalar options (density, viscosity) are not views: read and write through the attribute
                return _Accessor(lambda: getattr(model.opt, name), lambda value: setattr(model.opt, name, value))
            array = getattr(model.opt, name)
        else:
            array = getattr(model, self.field)
        rows = self._rows(mujoco, model, object_type)
        # Columns: of 2-D fields, or the components of a vector option such as opt.gravity
        n_columns = array.shape[-1] if array.ndim == 2 or object_type == "none" else 0
        if self.column is not None and not 0 <= self.column < n_columns:
            raise ValueError(f"MujocoTarget: column {self.column} does not exist in '{self.field}' of shape {array.shape}")
        columns = slice(None) if self.column is None else self.column
        index = (rows, columns) if array.ndim == 2 else (columns if object_type == "none" else rows)

        def write(value: Any) -> None:
            array[index] = value

        return _Accessor(lambda: array[index].copy(), write, needs_set_const)

    def _rows(self, mujoco: Any, model: Any, object_type: str) -> Any:
        """Row indices of the named objects (dofs of the named joints for ``dof_*`` fields)."""
        if object_type == "none" or self.names is None:
            return slice(None)
        names = (self.names,) if isinstance(self.names, str) else tuple(self.names)
        obj, count = {
            "body": (mujoco.mjtObj.mjOBJ_BODY, model.nbody),
            "geom": (mujoco.mjtObj.mjOBJ_GEOM, model.ngeom),
            "joint": (mujoco.mjtObj.mjOBJ_JOINT, model.njnt),
            "actuator": (mujoco.mjtObj.mjOBJ_ACTUATOR, model.nu),
        }[object_type]
        ids = [mujoco.mj_name2id(model, obj, name) for name in names]
        if min(ids) < 0:
            valid = [mujoco.mj_id2name(model, obj, i) for i in range(count)]
            unknown = [name for name, i in zip(names, ids, strict=True) if i < 0]
            raise ValueError(f"MujocoTarget: unknown {object_type} name(s) {unknown} for '{self.field}'; valid names: {valid}")
        if not self.field.startswith("dof_"):
            return np.array(ids)
        # A joint owns 6 (free), 3 (ball) or 1 (slide, hinge) dofs
        n_dofs = {int(mujoco.mjtJoint.mjJNT_FREE): 6, int(mujoco.mjtJoint.mjJNT_BALL): 3}
        return np.concatenate([model.jnt_dofadr[i] + np.arange(n_dofs.get(int(model.jnt_type[i]), 1)) for i in ids])


@dataclass(frozen=True)
class CallableTarget:
    """
    A parameter read and written through functions, for values that must stay consistent with others (e.g.
    CartPole's ``polemass_length = masspole * length``).

    :param get: ``get(env.unwrapped) -> value`` (a number or an array)
    :param set: ``set(env.unwrapped, value)``
    """

    get: Callable[[Any], Any]
    set: Callable[[Any, Any], None]

    def bind(self, env: gym.Env) -> _Accessor:
        """Bind both functions to ``env.unwrapped``."""
        unwrapped = env.unwrapped
        return _Accessor(lambda: self.get(unwrapped), lambda value: self.set(unwrapped, value))


Target = AttributeTarget | MujocoTarget | CallableTarget


@dataclass(frozen=True)
class ParameterSpec:
    """
    One randomized parameter: where it lives, how it is drawn, and how the draw is combined with the nominal value.

    A draw ``x`` lies in ``[low, high]`` in the units of the operation: the value itself (``"absolute"``), a factor of
    the nominal value (``"scale"``) or an offset added to it (``"add"``). ``"normal"`` draws ``N(mean, std)`` clipped
    to ``[low, high]``; ``"bernoulli"`` draws 1 with probability ``p`` (on/off switches, ``low=0``, ``high=1``).

    :param name: key of the draw in ``info["domain_randomization"]``
    :param target: what to write: an attribute path of the unwrapped env (a str), a :class:`AttributeTarget`,
        :class:`MujocoTarget`, :class:`CallableTarget`, or a tuple of them that all receive the same draw
    :param low: lower bound of the draw
    :param high: upper bound of the draw
    :param distribution: ``"uniform"``, ``"log_uniform"`` (needs ``low > 0``), ``"normal"`` or ``"bernoulli"``
    :param operation: ``"absolute"``, ``"scale"`` (needs ``low >= 0``) or ``"add"``
    :param mean: mean of ``"normal"``; None: the middle of ``[low, high]``
    :param std: standard deviation of ``"normal"`` (required, > 0)
    :param p: probability of drawing 1 with ``"bernoulli"``
    :param limits: open interval ``(lower, upper)`` every written value must lie in (checked at construction
        against the extreme draws), e.g. LunarLander's gravity ``(-12, 0)``; None: no check
    """

    name: str
    target: str | Target | tuple[str | Target, ...]
    low: float
    high: float
    distribution: Distribution = "uniform"
    operation: Operation = "absolute"
    mean: float | None = None
    std: float | None = None
    p: float = 0.5
    limits: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        where = f"ParameterSpec '{self.name}'"
        if self.distribution not in _DISTRIBUTIONS:
            raise ValueError(f"{where}: unknown distribution '{self.distribution}', expected one of {_DISTRIBUTIONS}")
        if self.operation not in _OPERATIONS:
            raise ValueError(f"{where}: unknown operation '{self.operation}', expected one of {_OPERATIONS}")
        if not self.low <= self.high:
            raise ValueError(f"{where}: low ({self.low}) must be <= high ({self.high})")
        if self.operation == "scale" and self.low < 0:
            raise ValueError(f"{where}: a scale factor must be >= 0, received low={self.low}")
        if self.distribution == "log_uniform" and not self.low > 0:
            raise ValueError(f"{where}: log_uniform needs low > 0, received low={self.low}")
        if self.distribution == "normal" and (self.std is None or not self.std > 0):
            raise ValueError(f"{where}: the normal distribution needs std > 0, received std={self.std}")
        if self.distribution == "bernoulli" and not (0 <= self.p <= 1 and self.low == 0 and self.high == 1):
            raise ValueError(f"{where}: bernoulli needs low=0, high=1, p in [0, 1]; got {self.low}, {self.high}, {self.p}")
        inside = self.limits is None or self.limits[0] < self.low <= self.high < self.limits[1]
        if self.operation == "absolute" and not inside:
            raise ValueError(f"{where}: the bounds [{self.low}, {self.high}] must lie inside the open interval {self.limits}")

    @property
    def targets(self) -> tuple[Target, ...]:
        """The targets as a tuple, strings turned into :class:`AttributeTarget`."""
        targets = self.target if isinstance(self.target, tuple) else (self.target,)
        return tuple(AttributeTarget(target) if isinstance(target, str) else target for target in targets)

    def apply(self, nominal: np.ndarray, draw: float) -> np.ndarray:
        """The value to write for ``draw`` given the ``nominal`` value."""
        if self.operation == "scale":
            return nominal * draw
        if self.operation == "add":
            return nominal + draw
        return np.full_like(nominal, draw)

    def center(self, nominal: np.ndarray) -> float:
        """The draw that reproduces the nominal value (clipped into the bounds): what ``strength=0`` converges to."""
        natural = {"scale": 1.0, "add": 0.0}.get(self.operation)
        if natural is None:
            natural = float(nominal.reshape(-1)[0])
        return float(np.clip(natural, self.low, self.high))

    def sample(self, rng: np.random.Generator, center: float, strength: float) -> float:
        """
        Draw once, then shrink the draw toward ``center`` by ``strength`` (in log space for log_uniform).

        The number of random numbers used does not depend on ``strength``, so a curriculum keeps the same stream.
        """
        if self.distribution == "bernoulli":
            draw, keep = float(rng.random() < self.p), rng.random() < strength
            return draw if keep else center
        if self.distribution == "log_uniform":
            draw = float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))
            return float(np.clip(center * (draw / center) ** strength, self.low, self.high))
        if self.distribution == "normal":
            mean = (self.low + self.high) / 2 if self.mean is None else self.mean
            draw = float(np.clip(rng.normal(mean, cast(float, self.std)), self.low, self.high))
        else:
            draw = float(rng.uniform(self.low, self.high))
        # The clip only removes round-off: center and draw both lie in [low, high]
        return float(np.clip(center + strength * (draw - center), self.low, self.high))


class DomainRandomization(gym.Wrapper[ObsType, ActType, ObsType, ActType], gym.utils.RecordConstructorArgs):
    """
    Resample environment parameters at every ``reset()``, before the inner reset (so parameters read at reset, such
    as LunarLander's gravity or Walker2d's reset noise, take effect in the new episode).

    - Reproducible: the draws come from the wrapper's own generator, reseeded by ``reset(seed=...)`` (the same seed
      gives the same parameters; SB3 seeds sub-env ``i`` with ``seed + i``, so each sub-env draws its own stream).
    - No drift: every reset writes from the nominal values cached at construction (so wrap an env whose parameters
      are nominal), never from the previous draw.
      Specs that share a target compose in order (scale and add act on the value the previous spec left).
    - The draws are returned in ``info["domain_randomization"]`` (``{spec.name: draw}``) and kept in
      :attr:`last_draws`.
    - ``enabled=False`` restores the nominal values at once (for evaluation); ``strength`` in ``[0, 1]`` shrinks
      every range toward its nominal value (for curricula). With SB3 VecEnvs use
      ``env_method("set_strength", 0.5)`` / ``env_method("set_enabled", False)``: ``set_attr`` only reaches the
      outermost wrapper (e.g. SB3's Monitor), so it works only when this wrapper is outermost.

    Example (LunarLander with random gravity and wind):
        >>> import gymnasium as gym
        >>> from sb3_dqfd.wrappers import DomainRandomization, ParameterSpec
        >>> specs = [
        ...     ParameterSpec("gravity", "gravity", low=-11.0, high=-9.0, limits=(-12.0, 0.0)),
        ...     ParameterSpec("wind", "enable_wind", low=0, high=1, distribution="bernoulli", p=0.5),
        ... ]
        >>> env = DomainRandomization(gym.make("LunarLander-v3"), specs)
        >>> _, info = env.reset(seed=42)
        >>> draws = info["domain_randomization"]
        >>> -11.0 <= draws["gravity"] <= -9.0 and env.unwrapped.gravity == draws["gravity"]
        True
        >>> env.reset(seed=42)[1]["domain_randomization"] == draws
        True
        >>> env.enabled = False
        >>> env.unwrapped.gravity
        -10.0

    :param env: the environment to wrap
    :param specs: the randomized parameters (names must be unique)
    :param enabled: draw parameters at reset (True) or keep the nominal values (False)
    :param strength: in ``[0, 1]``: 1 uses the full ranges, 0 pins every parameter to its nominal value
    """

    def __init__(
        self,
        env: gym.Env[ObsType, ActType],
        specs: Sequence[ParameterSpec],
        enabled: bool = True,
        strength: float = 1.0,
    ):
        gym.utils.RecordConstructorArgs.__init__(self, specs=specs, enabled=enabled, strength=strength)
        gym.Wrapper.__init__(self, env)
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"DomainRandomization: spec names must be unique, received {names}")
        self.specs = tuple(specs)
        self._accessors = [[target.bind(env) for target in spec.targets] for spec in self.specs]
        self._nominal = [[accessor.read() for accessor in accessors] for accessors in self._accessors]
        self._centers = [spec.center(nominal[0]) for spec, nominal in zip(self.specs, self._nominal, strict=True)]
        for spec, nominals in zip(self.specs, self._nominal, strict=True):
            if spec.operation == "absolute" and any(nominal.size != 1 for nominal in nominals):
                raise ValueError(f"ParameterSpec '{spec.name}': an absolute value needs scalar targets; use index/column")
            self._check_limits(spec, nominals)
        self._rng: np.random.Generator | None = None
        self._strength = 1.0
        self.set_strength(strength)
        self._enabled = bool(enabled)
        self.last_draws: dict[str, float] = self.nominal_draws()

    @staticmethod
    def _check_limits(spec: ParameterSpec, nominals: list[np.ndarray]) -> None:
        if spec.limits is None:
            return
        for nominal in nominals:
            extremes = np.concatenate([spec.apply(nominal, spec.low).ravel(), spec.apply(nominal, spec.high).ravel()])
            if not np.all((spec.limits[0] < extremes) & (extremes < spec.limits[1])):
                raise ValueError(
                    f"ParameterSpec '{spec.name}': draws in [{spec.low}, {spec.high}] give values {extremes.min()} .. "
                    f"{extremes.max()} outside the allowed open interval {spec.limits}"
                )

    @property
    def strength(self) -> float:
        """How much of each range is used, in ``[0, 1]``."""
        return self._strength

    @strength.setter
    def strength(self, strength: float) -> None:
        self.set_strength(strength)

    def set_strength(self, strength: float) -> None:
        """
        Set :attr:`strength` (takes effect at the next reset); a method so ``VecEnv.env_method`` reaches it.

        :param strength: in ``[0, 1]``
        """
        if not 0 <= strength <= 1:
            raise ValueError(f"DomainRandomization: strength must be in [0, 1], received {strength}")
        self._strength = float(strength)

    @property
    def enabled(self) -> bool:
        """Whether resets draw new parameters; setting False restores the nominal values at once."""
        return self._enabled

    @enabled.setter
    def enabled(self, enabled: bool) -> None:
        self.set_enabled(enabled)

    def set_enabled(self, enabled: bool) -> None:
        """
        Switch randomization on or off; off restores the nominal values immediately.

        :param enabled: draw parameters at the next resets (True) or keep the nominal values (False)
        """
        self._enabled = bool(enabled)
        if not self._enabled:
            self.last_draws = self.nominal_draws()
            self._write(self.last_draws)

    def nominal_draws(self) -> dict[str, float]:
        """The draws that reproduce the nominal values: 1 for scales, 0 for offsets, the nominal value itself."""
        return {
            spec.name: {"scale": 1.0, "add": 0.0}.get(spec.operation, float(nominal[0].reshape(-1)[0]))
            for spec, nominal in zip(self.specs, self._nominal, strict=True)
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[ObsType, dict[str, Any]]:
        """Draw and write new parameters (if enabled), then reset the inner env; the draws go to ``info``."""
        if seed is not None:
            self._rng = np.random.default_rng([seed, _SEED_TAG])
        elif self._rng is None:
            self._rng = np.random.default_rng()
        if self._enabled:
            rng, strength = self._rng, self._strength
            self.last_draws = {
                spec.name: spec.sample(rng, center, strength) for spec, center in zip(self.specs, self._centers, strict=True)
            }
            self._write(self.last_draws)
        obs, info = super().reset(seed=seed, options=options)
        info = dict(info)
        info["domain_randomization"] = dict(self.last_draws)
        return obs, info

    def _write(self, draws: dict[str, float]) -> None:
        """Restore every target's nominal value, then apply each spec's draw in order."""
        for accessors, nominals in zip(self._accessors, self._nominal, strict=True):
            for accessor, nominal in zip(accessors, nominals, strict=True):
                accessor.write(nominal.copy())
        for spec, accessors in zip(self.specs, self._accessors, strict=True):
            for accessor in accessors:
                accessor.write(spec.apply(accessor.read(), draws[spec.name]))
        if any(accessor.needs_set_const for accessors in self._accessors for accessor in accessors):
            self._set_const()

    def _set_const(self) -> None:
        """Recompute MuJoCo's derived constants (after mass/inertia/armature changes) without losing the state."""
        import mujoco

        model, data = self.env.unwrapped.model, self.env.unwrapped.data  # type: ignore[attr-defined]
        # mj_setConst runs kinematics at qpos0 inside `data`: save the state and put it back afterwards
        saved = [data.qpos.copy(), data.qvel.copy(), data.act.copy(), data.ctrl.copy(), data.time]
        mujoco.mj_setConst(model, data)
        data.qpos[:], data.qvel[:], data.act[:], data.ctrl[:], data.time = saved
        mujoco.mj_forward(model, data)
