"""Tests of the dev-stack launchers against real servers."""
