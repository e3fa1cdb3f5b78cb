"""The built-in models: their recipes (`recipes`), the corpus sources they are trained on
(`upstream` readers of chinese-poetry, WikiExtractor output and folders of titled texts; `debian`
for word lists and the small corpora of Debian packages), the build (`build`), its figures
(`metrics`) and model card (`card`). Run as `python -m finetune.builtin zh|en`."""
