"""The maths every stage shares: joint sets, affines, the heatmap codec, the loss."""
