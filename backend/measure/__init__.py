"""Measurement: energy meters (NVML, RAPL, CodeCarbon, the CPU estimate), live power sampling, the
machine's fingerprint, statistics and the trust rules that grade a measurement."""
