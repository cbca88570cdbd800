"""adamw-ref: the reference specification of the AdamW optimizer.

Pure Python (standard library only). The public API::

    from adamw_ref import AdamWConfig, get_profile, init, step, run_trajectory
    cfg = get_profile("torch").config.replace(lr=1e-2)
    state = init({"w": [1.0, -2.0]}, cfg)
    params, state = step({"w": [1.0, -2.0]}, {"w": [0.1, 0.2]}, state, cfg)
"""

from adamw_ref.arithmetic import (
    BINARY32_ARITHMETIC,
    BINARY64_ARITHMETIC,
    Arithmetic,
    FloatArithmetic,
    HighPrecision,
    arithmetic_for,
)
from adamw_ref.config import KNOB_FIELDS, AdamWConfig, ParamGroup
from adamw_ref.errors import AdamWRefError, ConfigError, InputError
from adamw_ref.formats import BFLOAT16, BINARY16, BINARY32, BINARY64, BinaryFormat
from adamw_ref.knobs import (
    AmsgradMode,
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    ScheduleCount,
    StepCountScope,
)
from adamw_ref.profiles import PROFILES, Profile, get_profile
from adamw_ref.schedules import (
    Constant,
    Cosine,
    Delayed,
    LinearWarmup,
    Schedule,
    StepDecay,
    UserSchedule,
    WarmupCosine,
    schedule_from_json,
)
from adamw_ref.state import State, state_from_json, state_to_json
from adamw_ref.step import Trajectory, init, run_trajectory, step

__version__ = "0.1.0"
SPEC_VERSION = "1.0"

__all__ = [
    "BFLOAT16",
    "BINARY16",
    "BINARY32",
    "BINARY32_ARITHMETIC",
    "BINARY64",
    "BINARY64_ARITHMETIC",
    "KNOB_FIELDS",
    "PROFILES",
    "SPEC_VERSION",
    "AdamWConfig",
    "AdamWRefError",
    "AmsgradMode",
    "Arithmetic",
    "BinaryFormat",
    "ConfigError",
    "Constant",
    "Cosine",
    "DecayForm",
    "DecayScaling",
    "DecayTiming",
    "Delayed",
    "EpsPlacement",
    "FloatArithmetic",
    "HighPrecision",
    "InputError",
    "LinearWarmup",
    "ParamGroup",
    "Profile",
    "Schedule",
    "ScheduleCount",
    "State",
    "StepCountScope",
    "StepDecay",
    "Trajectory",
    "UserSchedule",
    "WarmupCosine",
    "arithmetic_for",
    "get_profile",
    "init",
    "run_trajectory",
    "schedule_from_json",
    "state_from_json",
    "state_to_json",
    "step",
]
