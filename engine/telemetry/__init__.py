"""Device and host figures (NVML, torch, psutil), sampled on their own thread."""
