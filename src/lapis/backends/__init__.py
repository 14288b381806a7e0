"""Model backends: the Backend protocol (base), the simulator, and real engines."""
