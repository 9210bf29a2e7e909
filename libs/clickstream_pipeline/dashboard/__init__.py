"""The live dashboard: panel queries over the rollups (`panels`) and the web app (`app`)."""
