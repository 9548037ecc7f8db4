"""Test and example support: tiny, offline, random-init diffusers pipelines of every seed family.

Shipped in the package (not under tests/) so ``examples/*.py --tiny`` runs on a fresh install
without the test tree. Importing it imports diffusers.
"""
