"""The decision LLM (DESIGN §8, §10): every prompt and answer, training rows and the SFT/DPO dataset
rows, where an incremental training starts and what it trains on, the gate an adapter passes, and
the policies that choose a simulated worker's next action."""
