"""Pretrained taggers: conversion of the musicnn wheel's checkpoints, distilled students, agreement with a
teacher, the shipped students and thresholds (see `tagging`)."""
