# gunicorn's settings for newsletters, beside the command line of newsletters-web.service:
#   gunicorn --config /srv/newsletters/app/deploy/gunicorn.conf.py ... wsgi:app
# Read by gunicorn as Python; nothing else imports it.

# Confirmation, unsubscribe and preference links carry their secret in the path (and an
# unsubscribe link never expires): every request line that gunicorn logs, in the access log
# (--access-logfile) or anywhere else, shows it masked as /confirm/[token]. The class masks
# every atom of access_log_format, so a changed format stays masked.
logger_class = "newsletters.logs.LinkMaskingLogger"
