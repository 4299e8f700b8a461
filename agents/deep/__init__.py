"""Deep RL agents in PyTorch: DQN, REINFORCE, A2C, PPO, SAC and TD3 (one file per algorithm).

``ALGORITHMS`` maps registry names to ``"module:Class"``; :mod:`agents.registry` merges it with
the tabular agents, and classes are imported only when asked for.
"""

ALGORITHMS: dict[str, str] = {
    "dqn": "agents.deep.dqn:DQN",
    "reinforce": "agents.deep.reinforce:REINFORCE",
    "a2c": "agents.deep.a2c:A2C",
    "ppo": "agents.deep.ppo:PPO",
    "sac": "agents.deep.sac:SAC",
    "td3": "agents.deep.td3:TD3",
}
