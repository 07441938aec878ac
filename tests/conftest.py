pytest_plugins = [
    "tests.support.services",
    "tests.support.openai_server",
    "tests.support.kube",
    "tests.support.s3",
    "tests.support.models",
]
