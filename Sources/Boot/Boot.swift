// Boot
