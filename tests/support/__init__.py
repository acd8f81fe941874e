"""What tests share: fake servers, the app in-process or as a process, ports, browser, tiny models, pictures, paths."""
