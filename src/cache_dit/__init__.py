"""cache-dit"""
