#!/bin/sh
cat /app/greeting.txt /app/VERSION
