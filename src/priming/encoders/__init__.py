"""priming.encoders"""
