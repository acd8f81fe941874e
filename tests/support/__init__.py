"""What many tests share: fake servers, the app process, browser helpers, paths."""
