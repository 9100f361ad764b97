"""Agents: SB3 training in the learned simulator and campaign recommendations."""
