"""The only owner of httpx and httptools: the stamping transport, clients, error mapping."""
