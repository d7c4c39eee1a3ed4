"""``nnfast.torch.fuse`` as a real client uses it: stable-baselines3's PPO on gymnasium's
CartPole-v1 (both optional: ``pip install ".[peers]"``), its default MLP policy — separate
64-64 tanh policy and value networks, minibatches of 64, 10 epochs over each rollout of 2048
steps — with and without the policy's two networks fused (``FusedPolicy``: the same
``ActorCriticPolicy`` whose ``mlp_extractor`` networks go through ``nnfast.torch.fuse``, and
``nnfast.torch.Adam`` for its optimizer). The same seed for both.

``python -m bench.bench_rl [--timesteps N] [--repeats R]`` prints the wall time of ``learn()``
for each, in turns, with the load average at start and end and the CPU, and the mean episode
reward of the last rollouts (a check that the fused run learns as the stock one does, not a
benchmark figure)."""
import argparse
import os
import time

import pytest


def fused_policy():
    """``FusedPolicy``: sb3's ``ActorCriticPolicy`` with its policy and value networks fused."""
    from stable_baselines3.common.policies import ActorCriticPolicy

    import nnfast.torch

    class FusedPolicy(ActorCriticPolicy):
        def _build_mlp_extractor(self):
            super()._build_mlp_extractor()
            ex = self.mlp_extractor
            ex.policy_net = nnfast.torch.fuse(ex.policy_net)
            ex.value_net = nnfast.torch.fuse(ex.value_net)

    return FusedPolicy


def learn(fused, timesteps, seed=0):
    """(seconds of ``learn()``, mean episode reward of the last 20 episodes)."""
    import gymnasium
    import torch
    from stable_baselines3 import PPO

    import nnfast.torch

    torch.manual_seed(seed)
    env = gymnasium.make("CartPole-v1")
    if fused:
        model = PPO(fused_policy(), env, seed=seed, device="cpu", verbose=0,
                    policy_kwargs=dict(optimizer_class=nnfast.torch.Adam))
    else:
        model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    took = time.perf_counter() - start
    rewards = [e["r"] for e in list(model.ep_info_buffer)[-20:]]
    return took, sum(rewards) / max(1, len(rewards))


def test_ppo_learns_with_the_fused_policy():
    """Two short rollouts of PPO with the fused policy: it trains, and its networks are fused."""
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 is an optional peer")
    pytest.importorskip("gymnasium", reason="gymnasium is an optional peer")
    import warnings

    import nnfast.torch

    with warnings.catch_warnings():
        warnings.simplefilter("error", nnfast.torch.FallbackWarning)
        took, reward = learn(True, 256)
    assert took > 0 and reward > 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timesteps", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    from nnfast import _machine

    print(f"CPU: {_machine._cpu_model()}; load average at start: {os.getloadavg()[0]:.2f}")
    times = {False: [], True: []}
    for _ in range(args.repeats):
        for fused in (False, True):
            took, reward = learn(fused, args.timesteps)
            times[fused].append(took)
            print(f"{'fused' if fused else 'stock'}: learn({args.timesteps}) {took:.2f} s, "
                  f"mean reward of the last 20 episodes {reward:.1f}", flush=True)
    print(f"stock ÷ fused, best of {args.repeats}: {min(times[False]) / min(times[True]):.2f}×")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
