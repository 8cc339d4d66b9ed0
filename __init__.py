"""graphopt"""
