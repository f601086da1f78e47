"""Built-in datasets: synthetic videos (the default FullRun) and the THUMOS14-shaped feature benchmark."""
