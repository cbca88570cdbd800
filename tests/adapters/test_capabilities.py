"""adapters.capabilities.knob_table: the claimed profile's values NATIVE, all others UNSUPPORTED,
then the adapter's overrides (hand-stated expectations)."""

from __future__ import annotations

from adamw_ref import KNOB_FIELDS, get_profile
from adapters.capabilities import knob_table
from adapters.protocol import Support

N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED


def test_profile_values_native_others_unsupported() -> None:
    t = knob_table(get_profile("torch").config)
    assert set(t) == set(KNOB_FIELDS)
    assert t["eps_placement"] == {"after_bias_correction": N, "before_bias_correction": U}
    assert t["step_count_scope"] == {"per_parameter": N, "global": U}
    assert t["decay_form"]["multiplicative"] is N and t["decay_form"]["none"] is U


def test_overrides_are_applied_on_top() -> None:
    t = knob_table(
        get_profile("tinygrad").config,
        {"decay_form": {"none": N}, "amsgrad_mode": {"raw_v": U}, "schedule_count": {"post_increment": E}},
    )
    assert t["decay_form"]["added_to_update"] is N and t["decay_form"]["none"] is N
    assert t["decay_form"]["multiplicative"] is U
    assert t["amsgrad_mode"] == {"raw_v": U, "bias_corrected_v": U}
    assert t["schedule_count"] == {"pre_increment": N, "post_increment": E}
