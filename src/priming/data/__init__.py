"""priming.data"""
