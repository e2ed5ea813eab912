"""What judge training needs besides the data files: the GRPO rewards (`rewards`)."""
