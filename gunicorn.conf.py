# gunicorn reads ./gunicorn.conf.py by default: a plain `gunicorn wsgi:app` (SPEC's command) run
# from the checkout masks link secrets in its logs too. deploy/gunicorn.conf.py is the same
# setting for the units, which name their config explicitly.
logger_class = "newsletters.logs.LinkMaskingLogger"
