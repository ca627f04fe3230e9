"""Forms on other people's pages: the iframe page, the JS widget, and their CORS rules."""
