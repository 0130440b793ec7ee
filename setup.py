from setuptools import find_packages, setup

setup(
    name="fairseq_mh",
    version="0.1.0",
    description="Metropolis-Hastings decoding for conditional masked language models (a fairseq plug-in)",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["fairseq_mh", "fairseq_mh.*"]),
    python_requires=">=3.9",
    # fairseq 0.12 on Python 3.11 comes from the `fairseq-fixed` build; scripts/setup.sh
    # installs it without its torchaudio dependency.  See README, "Installation".
    install_requires=["torch>=2.0", "sacrebleu>=2.0", "sentencepiece", "hydra-core>=1.3", "sacremoses", "matplotlib"],
    extras_require={"fairseq": ["fairseq-fixed==0.12.3.1"], "test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "fairseq-mh-generate = fairseq_mh.cli:generate",
            "fairseq-mh-interactive = fairseq_mh.cli:interactive",
            "fairseq-mh-preprocess = fairseq_mh.cli:preprocess",
            "fairseq-mh-pairwise = fairseq_mh.cli:pairwise",
        ]
    },
)
