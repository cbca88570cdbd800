// A plain-JavaScript AdamW that follows the adamw-ref specification operation by operation.
//
// Numbers are IEEE-754 binary64. For float32 the elementwise operations run with Math.fround
// after every + - * / sqrt, in exactly the order of adamw_ref/step.py, which makes each one the
// correctly rounded binary32 operation (double rounding from binary64 to binary32 is innocuous
// for these operations). As in the reference, scalars derived from hyperparameters and the step
// count (1-beta, lr*eta, s, 1-s, 1+s, 1-beta^k, sqrt(1-beta2^k)) are computed in binary64 and
// rounded once; beta, eps, lr and eta themselves are rounded once. No dependencies (Node >= 18).
//
// config: the JSON form of adamw_ref.AdamWConfig (snake_case fields, knob values as strings).
// params: {name: number[]}; grads: {name: number[] | null} (null freezes the parameter).
// state: {step, paramSteps: {name: int}, m: {name: number[]}, v: {...}, vMax: {...} | null}.

const ident = (x) => x;

/** The rounding function of a dtype: identity for float64, Math.fround for float32. */
export function roundingFor(dtype) {
  if (dtype === "float64") return ident;
  if (dtype === "float32") return Math.fround;
  throw new Error(`dtype: unsupported ${JSON.stringify(dtype)} (expected float64 or float32)`);
}

/** A schedule multiplier eta(count) from its JSON form (same formulas as adamw_ref.schedules). */
export function makeSchedule(spec) {
  switch (spec.kind) {
    case "constant":
      return () => spec.value;
    case "linear_warmup":
      return (c) =>
        spec.warmup_steps === 0 || c >= spec.warmup_steps
          ? 1.0
          : spec.start + ((1.0 - spec.start) * c) / spec.warmup_steps;
    case "cosine":
      return (c) => {
        const frac = Math.min(c, spec.total_steps) / spec.total_steps;
        return spec.final + (1.0 - spec.final) * 0.5 * (1.0 + Math.cos(Math.PI * frac));
      };
    case "warmup_cosine":
      return (c) => {
        if (c < spec.warmup_steps) return c / spec.warmup_steps;
        const span = spec.total_steps - spec.warmup_steps;
        const frac = Math.min(c - spec.warmup_steps, span) / span;
        return spec.final + (1.0 - spec.final) * 0.5 * (1.0 + Math.cos(Math.PI * frac));
      };
    case "step_decay":
      return (c) => spec.gamma ** Math.floor(c / spec.step_size);
    case "delayed": {
      const then = makeSchedule(spec.then ?? { kind: "constant", value: 1.0 });
      return (c) => (c < spec.until ? 0.0 : then(c));
    }
    default:
      throw new Error(`schedule.kind: unsupported ${JSON.stringify(spec.kind)}`);
  }
}

const KNOWN = {
  eps_placement: ["after_bias_correction", "before_bias_correction"],
  decay_scaling: ["lr", "schedule_multiplier", "unscaled"],
  decay_form: ["multiplicative", "proximal", "added_to_update", "coupled_l2", "none"],
  decay_timing: ["before_step", "after_step"],
  amsgrad_mode: ["raw_v", "bias_corrected_v"],
  schedule_count: ["pre_increment", "post_increment"],
  step_count_scope: ["per_parameter", "global"],
};

/** Throws an Error naming the first knob value this implementation does not know. */
export function checkSupported(config) {
  for (const [knob, values] of Object.entries(KNOWN)) {
    if (!values.includes(config[knob])) {
      throw new Error(`${knob}: unsupported ${JSON.stringify(config[knob])}`);
    }
  }
  makeSchedule(config.lr_schedule);
  makeSchedule(config.wd_schedule);
}

function groupFor(config, name) {
  for (const g of config.groups) {
    if (g.names.includes(name)) {
      return [g.lr ?? config.lr, g.weight_decay ?? config.weight_decay];
    }
  }
  return [config.lr, config.weight_decay];
}

const nanMax = (x, y) => (x !== x ? x : y !== y ? y : x >= y ? x : y);

/** The state before the first step. */
export function init(params, config) {
  const zeros = (n) => new Array(n).fill(0);
  const state = { step: 0, paramSteps: {}, m: {}, v: {}, vMax: config.amsgrad ? {} : null };
  for (const [name, p] of Object.entries(params)) {
    state.paramSteps[name] = 0;
    state.m[name] = zeros(p.length);
    state.v[name] = zeros(p.length);
    if (state.vMax) state.vMax[name] = zeros(p.length);
  }
  return state;
}

/** One AdamW update; returns {params, state} (inputs are not modified). */
export function step(params, grads, state, config, dtype = "float64") {
  const R = roundingFor(dtype);
  const cfg = config;
  const t = state.step + 1;
  const count = cfg.schedule_count === "pre_increment" ? state.step : t;
  const etaF = makeSchedule(cfg.lr_schedule)(count);
  const omegaF = makeSchedule(cfg.wd_schedule)(count);
  // Scalars: binary64 (S), rounded once into the working format (R) where used.
  const b1S = cfg.beta1, b2S = cfg.beta2;
  const b1 = R(b1S);
  const b2 = R(b2S);
  const oneMb1 = R(1.0 - b1S);
  const oneMb2 = R(1.0 - b2S);
  const eps = R(cfg.eps);
  const epsRoot = R(cfg.eps_root);
  const eta = R(etaF);

  const out = { step: t, paramSteps: {}, m: {}, v: {}, vMax: state.vMax ? {} : null };
  const newParams = {};
  for (const [name, raw] of Object.entries(params)) {
    const g0 = grads[name];
    if (g0 === null || g0 === undefined) {
      newParams[name] = raw.map(R);
      out.m[name] = state.m[name];
      out.v[name] = state.v[name];
      if (out.vMax) out.vMax[name] = state.vMax[name];
      out.paramSteps[name] = state.paramSteps[name];
      continue;
    }
    const own = state.paramSteps[name] + 1;
    out.paramSteps[name] = own;
    const k = (cfg.step_count_scope === "per_parameter" ? own : t) + cfg.bias_correction_offset;
    const [lrBase, wdBase] = groupFor(cfg, name);
    const lrTS = lrBase * etaF;
    const lamTS = wdBase * omegaF;
    const sS =
      cfg.decay_scaling === "lr" ? lrTS * lamTS
        : cfg.decay_scaling === "schedule_multiplier" ? etaF * lamTS
          : lamTS;
    const alpha = R(lrBase);
    const lrT = R(lrTS);
    const lamT = R(lamTS);
    const form = cfg.decay_form;
    const active = form !== "none" && wdBase !== 0;
    const before = cfg.decay_timing === "before_step";
    const oneMs = R(1.0 - sS);
    const onePs = R(1.0 + sS);

    const bc = cfg.bias_correction;
    const bc1 = bc ? R(1.0 - b1S ** k) : R(1.0);
    const bc2S = bc ? 1.0 - b2S ** k : 1.0;
    const bc2 = R(bc2S);
    const bc1Next = bc ? R(1.0 - b1S ** (k + 1)) : R(1.0);
    const sqrtBc2 = R(Math.sqrt(bc2S));

    const n = raw.length;
    const th = new Array(n), mm = new Array(n), vv = new Array(n);
    const vmaxOld = state.vMax ? state.vMax[name] : null;
    const vmaxNew = vmaxOld ? new Array(n) : null;
    for (let i = 0; i < n; i++) {
      let theta = R(raw[i]);
      let g = R(g0[i]);
      if (cfg.maximize) g = -g;
      if (active && form === "coupled_l2") g = R(g + R(theta * lamT));
      if (active && before && form === "multiplicative") theta = R(theta * oneMs);
      else if (active && before && form === "proximal") theta = R(theta / onePs);

      const m = R(R(state.m[name][i] * b1) + R(g * oneMb1));
      const v = R(R(state.v[name][i] * b2) + R(R(g * g) * oneMb2));

      let vRaw = v;
      let vHat = null;
      if (cfg.amsgrad && vmaxOld) {
        if (cfg.amsgrad_mode === "raw_v") {
          vmaxNew[i] = nanMax(vmaxOld[i], v);
          vRaw = vmaxNew[i];
        } else {
          vmaxNew[i] = nanMax(vmaxOld[i], R(v / bc2));
          vHat = vmaxNew[i];
          vRaw = null;
        }
      }
      const mHat = cfg.nesterov
        ? R(R(R(m * b1) / bc1Next) + R(R(g * oneMb1) / bc1))
        : R(m / bc1);
      let u;
      if (cfg.eps_placement === "after_bias_correction") {
        if (vHat === null) vHat = R(vRaw / bc2);
        u = R(mHat / R(R(Math.sqrt(R(vHat + epsRoot))) + eps));
      } else {
        if (vRaw === null) vRaw = R(vHat * bc2);
        u = R(R(mHat / R(R(Math.sqrt(R(vRaw + epsRoot))) + eps)) * sqrtBc2);
      }
      if (active && form === "added_to_update") {
        let delta;
        if (cfg.decay_scaling === "lr") delta = R(R(u + R(theta * lamT)) * lrT);
        else if (cfg.decay_scaling === "schedule_multiplier") {
          delta = R(R(R(u * alpha) + R(theta * lamT)) * eta);
        } else delta = R(R(u * lrT) + R(theta * lamT));
        theta = R(theta - delta);
      } else {
        theta = R(theta - R(u * lrT));
      }
      if (active && !before && form === "multiplicative") theta = R(theta * oneMs);
      else if (active && !before && form === "proximal") theta = R(theta / onePs);
      th[i] = theta;
      mm[i] = m;
      vv[i] = v;
    }
    newParams[name] = th;
    out.m[name] = mm;
    out.v[name] = vv;
    if (out.vMax) out.vMax[name] = vmaxNew;
  }
  return { params: newParams, state: out };
}
