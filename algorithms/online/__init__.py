"""Online (interaction) algorithms."""
